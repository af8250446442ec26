"""``drillbit validate PATH...`` offline: files, folders and multi-document YAML read into a problem list (file,
document, kind/name, field, reason), YAML syntax errors and malformed documents reported as problems, documents of
other API groups as notes; the command's lines, summary and exit codes (0 clean, 1 problems, 2 a known error)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.app import app
from drillbit import manifests
from tests.unit.test_chaosmesh_webhook import DELAY, POD_KILL, obj
from tests.unit.test_cli_fast import DATA_STACK, ORCHESTRATION, drillbit

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
KILL = obj("PodChaos", POD_KILL | {"duration": "30s"}, name="kill-one-node")
LOSS_TEN = obj("NetworkChaos", DELAY | {"action": "loss", "loss": {"loss": "ten"}}, name="lossy")
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "b"}}


def write(path: Path, *documents: object, raw: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(raw if raw is not None else yaml.safe_dump_all(documents, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------------ the problem list


def test_a_multi_document_file_numbers_its_documents_and_skips_empty_ones(tmp_path):
    text = "\n---\n".join(yaml.safe_dump(d) for d in (KILL, CONFIGMAP, LOSS_TEN))
    path = write(tmp_path / "chaos.yaml", raw=text.replace("---\n", "---\n# nothing here\n---\n", 1))
    report = manifests.validate_paths([path])
    assert report.documents == {str(path): 4}  # the empty document counts, so the indices match the file
    assert report.problems == [
        manifests.Problem(
            str(path), 2, "ConfigMap", "settings", "(top level)", "not a Chaos Mesh object (skipped)", True
        ),
        manifests.Problem(
            str(path),
            3,
            "NetworkChaos",
            "lossy",
            "spec.loss.loss",
            "'ten' is not a number (strconv.ParseFloat: parsing \"ten\": invalid syntax); write it as a string "
            'such as "25"',
        ),
    ]
    assert report.lines()[1].startswith(f"{path}#3 NetworkChaos/lossy spec.loss.loss: 'ten' is not a number")
    assert [(o.document, o.kind, o.valid) for o in report.objects] == [
        (0, "PodChaos", True),
        (3, "NetworkChaos", False),
    ]


def test_a_single_document_file_has_no_document_number_in_its_lines(tmp_path):
    path = write(tmp_path / "one.yaml", LOSS_TEN)
    assert manifests.validate_paths([path]).lines() == [
        f"{path} NetworkChaos/lossy spec.loss.loss: 'ten' is not a number (strconv.ParseFloat: parsing \"ten\": "
        'invalid syntax); write it as a string such as "25"'
    ]


def test_a_folder_is_read_recursively_for_yaml_and_yml_in_sorted_order(tmp_path):
    write(tmp_path / "chaos" / "b.yml", KILL)
    write(tmp_path / "chaos" / "nested" / "deeper" / "a.yaml", LOSS_TEN)
    write(tmp_path / "chaos" / "a.yaml", CONFIGMAP)
    (tmp_path / "chaos" / "notes.txt").write_text("not: yaml: at all: [")
    report = manifests.validate_paths([tmp_path / "chaos"])
    folder = tmp_path / "chaos"
    assert list(report.documents) == [
        str(folder / "a.yaml"),
        str(folder / "b.yml"),
        str(folder / "nested/deeper/a.yaml"),
    ]
    assert [(p.file, p.field) for p in report.problems] == [
        (str(folder / "a.yaml"), "(top level)"),
        (str(folder / "nested/deeper/a.yaml"), "spec.loss.loss"),
    ]
    assert report.summary() == "1 problem, 1 note: 2 Chaos Mesh objects checked in 3 documents of 3 files"


def test_a_yaml_syntax_error_is_a_problem_with_its_line_and_the_documents_before_it_are_checked(tmp_path):
    raw = yaml.safe_dump(LOSS_TEN) + "---\nkind: PodChaos\nspec: {mode: [one, all\n---\n" + yaml.safe_dump(KILL)
    path = write(tmp_path / "broken.yaml", raw=raw)
    report = manifests.validate_paths([path])
    (loss, syntax) = report.problems
    assert (loss.document, loss.field) == (0, "spec.loss.loss")
    assert (syntax.document, syntax.kind, syntax.name, syntax.field) == (1, "?", "?", "(yaml)")
    line = len(yaml.safe_dump(LOSS_TEN).splitlines()) + 4
    assert syntax.reason.startswith(f"YAML syntax error at line {line}, column 1: expected ',' or ']'")
    assert report.documents[str(path)] == 2 and len(report.objects) == 1


def test_an_unreadable_file_is_a_problem(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00kind")
    (problem,) = manifests.validate_paths([path]).problems
    assert (problem.document, problem.field) == (None, "(file)") and problem.reason.startswith("cannot read it:")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "kind: PodChaos\nspec: pod-kill\n",
            "PodChaos/? apiVersion: None; Chaos Mesh v2 objects are chaos-mesh.org/v1alpha1",
        ),
        (
            yaml.safe_dump(KILL | {"spec": "pod-kill"}),
            "PodChaos/kill-one-node spec: 'pod-kill' is not of type 'object'",
        ),
        (yaml.safe_dump(KILL | {"spec": [1]}), "PodChaos/kill-one-node spec: [1] is not of type 'object'"),
        (yaml.safe_dump(KILL | {"metadata": 3}), "PodChaos/? metadata: 3 is not of type 'object'"),
        (
            "- apiVersion: chaos-mesh.org/v1alpha1\n- kind: PodChaos\n",
            "?/? (top level): a manifest is a mapping, got list",
        ),
        ("just a string\n", "?/? (top level): a manifest is a mapping, got str"),
        ("42\n", "?/? (top level): a manifest is a mapping, got int"),
        (
            yaml.safe_dump(KILL | {"apiVersion": "chaos-mesh.org/v1beta1"}),
            "apiVersion: 'chaos-mesh.org/v1beta1'; Chaos",
        ),
        (yaml.safe_dump(KILL | {"kind": "PodKaos"}), "PodKaos/kill-one-node kind: 'PodKaos' is not one of PodChaos,"),
    ],
)
def test_malformed_documents_are_problems_never_crashes(tmp_path, raw, expected):
    report = manifests.validate_paths([write(tmp_path / "bad.yaml", raw=raw)])
    assert len(report.errors) == 1 and not report.notes
    assert expected in report.lines()[0]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (CONFIGMAP, "ConfigMap/settings (top level): note: not a Chaos Mesh object (skipped)"),
        (
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}},
            "Deployment/web (top level): note: not a Chaos Mesh object (skipped)",
        ),
        ({"replicas": 3, "image": "x"}, "?/? (top level): note: no apiVersion: not a Kubernetes object (skipped)"),
        (
            obj("JVMChaos", {"action": "gc"}),
            "JVMChaos/exp kind: note: Drillbit has no CRD schema for JVMChaos: not validated",
        ),
    ],
)
def test_documents_that_are_not_chaos_mesh_objects_drillbit_validates_are_notes(tmp_path, document, expected):
    report = manifests.validate_paths([write(tmp_path / "other.yaml", document)])
    assert report.errors == [] and report.objects == []
    assert report.lines() == [f"{tmp_path / 'other.yaml'} {expected}"]


def test_a_missing_path_or_a_folder_without_yaml_is_a_path_error(tmp_path):
    with pytest.raises(manifests.PathError, match=r"nope\.yaml: no such file or folder"):
        manifests.validate_paths([tmp_path / "nope.yaml"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("no manifests")
    with pytest.raises(manifests.PathError, match=r"empty: no \*\.yaml or \*\.yml file in this folder"):
        manifests.validate_paths([tmp_path / "empty"])


def test_a_file_named_twice_is_read_once(tmp_path):
    path = write(tmp_path / "a.yaml", LOSS_TEN)
    assert len(manifests.validate_paths([path, tmp_path, path]).errors) == 1


def test_the_repositorys_own_chaos_manifests_have_no_problems():
    report = manifests.validate_paths([ROOT / "infra" / "chaos-mesh"])
    assert report.errors == [] and len(report.objects) == 4
    assert {p.kind for p in report.notes} == {"ServiceAccount", "Role", "RoleBinding"}


# ------------------------------------------------------------------------------------------------ the command


def test_the_command_exits_0_with_a_green_summary_when_there_is_no_problem(tmp_path):
    write(tmp_path / "ok.yaml", KILL, CONFIGMAP)
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{tmp_path / 'ok.yaml'}#1 ConfigMap/settings (top level): note: not a Chaos Mesh object (skipped)",
        "no problems, 1 note: 1 Chaos Mesh object checked in 2 documents of 1 file",
    ]


def test_the_command_prints_one_line_per_problem_then_the_summary_and_exits_1(tmp_path):
    broken = obj("PodChaos", POD_KILL | {"action": "container-kill", "duration": "1d"}, name="kill-container")
    path = write(tmp_path / "chaos.yaml", broken, LOSS_TEN)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"{path}#0 PodChaos/kill-container spec.duration: '1d' is not a duration (time: unknown unit \"d\" in "
        'duration "1d"); use a Go duration such as 30s or 1h30m',
        f"{path}#0 PodChaos/kill-container spec.containerNames: the name of container is required on "
        "container-kill action",
        f"{path}#1 NetworkChaos/lossy spec.loss.loss: 'ten' is not a number (strconv.ParseFloat: parsing \"ten\": "
        'invalid syntax); write it as a string such as "25"',
        "3 problems: 2 Chaos Mesh objects checked in 2 documents of 1 file",
    ]


def test_a_missing_path_is_one_red_line_and_exit_2(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: {tmp_path / 'nope'}: no such file or folder"]


def test_an_unknown_or_non_kubernetes_environment_is_exit_2(tmp_path):
    path = write(tmp_path / "ok.yaml", KILL)
    config = write(tmp_path / "drillbit.yaml", {"default_environment": "sandbox"})
    result = runner.invoke(app, ["validate", str(path), "--env", "staging", "--config", str(config)])
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (
        "error: drillbit.yaml: environment 'staging' is not defined; known: sandbox"
    )
    result = runner.invoke(app, ["validate", str(path), "--env", "sandbox", "--config", str(config)])
    assert result.exit_code == 2
    assert "environment 'sandbox' is on platform sandbox; --env needs a kubernetes environment" in result.output


def test_a_known_error_is_exit_2_without_traceback_in_a_fresh_process_that_imports_no_heavy_stack(tmp_path):
    imported, code, out, err = drillbit(tmp_path, "validate", str(tmp_path / "missing.yaml"))
    assert code == 2, out + err
    assert f"error: {tmp_path / 'missing.yaml'}: no such file or folder" in " ".join(out.split())
    assert "Traceback" not in out + err
    assert imported & (ORCHESTRATION | DATA_STACK) == set()


def test_the_command_checks_the_repositorys_manifests_in_a_fresh_process(tmp_path):
    imported, code, out, _ = drillbit(tmp_path, "validate", str(ROOT / "infra" / "chaos-mesh"))
    assert code == 0, out
    assert out.splitlines()[-1] == "no problems, 5 notes: 4 Chaos Mesh objects checked in 9 documents of 5 files"
    assert imported & (ORCHESTRATION | DATA_STACK) == set(), "offline validation needs no cluster client"


def test_the_help_names_the_command():
    result = runner.invoke(app, ["validate", "--help"])
    assert result.exit_code == 0
    assert "Check Chaos Mesh v2 manifests" in result.output and "--env" in result.output
