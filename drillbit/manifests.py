"""One's own Chaos Mesh v2 manifests: read files and folders, check every object offline, and, given a cluster,
against it. ``drillbit validate`` is the command; this is its core (no Prefect, no CLI).

Offline, each object gets ``chaosmesh.problems``: its CRD schema, Chaos Mesh's admission webhook
(``chaosmesh_webhook``), then what the API server, Chaos Mesh later on and Drillbit refuse. Against a cluster
(``check_cluster``), every pod selection of every object that passed offline: the namespaces exist, the selector
selects at least one pod, the named ``containerNames`` are containers of the selected pods, and an IOChaos's
``volumePath`` is the mount path of a volume in them.

Decisions, in one place:

- A path is a file or a folder; a folder is read recursively for ``*.yaml`` and ``*.yml``, in sorted order. A path
  that does not exist, or a folder without YAML, is a ``PathError`` (the command's exit 2), not a problem.
- A file is a YAML stream read with ``yaml.safe_load_all``; its documents are numbered from 0 in the order they stand,
  empty ones (a bare ``---``, only comments) counted and skipped. A syntax error is a problem at field ``(yaml)``
  naming its line and column: the documents before it are checked, the rest of the file cannot be read.
- A document of another API group (a Deployment, a kustomization) is a note, "not a Chaos Mesh object (skipped)",
  never a problem: folders of manifests mix kinds. So is a mapping with neither ``apiVersion`` nor a Chaos Mesh
  ``kind``, and a Chaos Mesh kind without a CRD in the shared schemas (AWSChaos, JVMChaos, …): it is not validated.
- Everything else found is a problem: a document that is not a mapping (a list, a string), a ``chaos-mesh.org``
  object of another version or of an unknown kind, every refusal of ``chaosmesh.problems`` and of the cluster.
- Against a cluster, an object with offline problems is not checked (a note says so), and ``fieldSelectors`` and
  ``nodeSelectors`` are not applied: a selector using them may select fewer pods than counted here, never more.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from drillbit.faults.errors import FaultError
from drillbit.faults.platform import chaosmesh
from drillbit.faults.platform import chaosmesh_webhook as webhook

if TYPE_CHECKING:
    from drillbit.faults.platform.kubernetes import KubeConnection

YAML_SUFFIXES = (".yaml", ".yml")
# The kinds whose selector picks containers (ContainerSelector): the others (NetworkChaos, HTTPChaos) pick pods only.
CONTAINER_KINDS = ("PodChaos", "StressChaos", "IOChaos", "TimeChaos", "DNSChaos")


class PathError(ValueError):
    """A path to validate does not exist, or is a folder holding no YAML file."""


@dataclass(frozen=True)
class Problem:
    """One problem (or, with ``note``, a remark that is no problem) of one document of one file.

    ``document`` is the 0-based index of the document in the file's YAML stream (None: the file as a whole);
    ``field`` a path such as ``spec.delay.correlation``, ``(top level)``, ``(yaml)`` or ``(file)``."""

    file: str
    document: int | None
    kind: str
    name: str
    field: str
    reason: str
    note: bool = False

    def line(self, multi_document: bool = False) -> str:
        """``FILE[#DOC] KIND/NAME FIELD: REASON``; ``#DOC`` for a file of several documents only."""
        where = self.file + (f"#{self.document}" if multi_document and self.document is not None else "")
        return f"{where} {self.kind}/{self.name} {self.field}: {'note: ' if self.note else ''}{self.reason}"


@dataclass(frozen=True)
class ChaosObject:
    """A Chaos Mesh object read from a file, and whether it passed the offline checks."""

    file: str
    document: int
    kind: str
    name: str
    manifest: dict[str, Any]
    valid: bool


@dataclass
class Report:
    """What ``validate_paths`` (and ``check_cluster``) found."""

    documents: dict[str, int] = field(default_factory=dict)  # file → documents in its YAML stream, empty ones too
    objects: list[ChaosObject] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.note]

    @property
    def notes(self) -> list[Problem]:
        return [p for p in self.problems if p.note]

    def lines(self) -> list[str]:
        return [p.line(self.documents.get(p.file, 0) > 1) for p in self.problems]

    def summary(self) -> str:
        """``3 problems, 1 note: 4 Chaos Mesh objects checked in 6 documents of 2 files``."""
        found = _count(len(self.errors), "problem") if self.errors else "no problems"
        if self.notes:
            found += f", {_count(len(self.notes), 'note')}"
        read = f"{_count(sum(self.documents.values()), 'document')} of {_count(len(self.documents), 'file')}"
        return f"{found}: {_count(len(self.objects), 'Chaos Mesh object')} checked in {read}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# ------------------------------------------------------------------------------------------------ reading


def yaml_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files to read: each file given, and every ``*.yaml`` / ``*.yml`` under each folder given."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
            if not found:
                raise PathError(f"{path}: no *.yaml or *.yml file in this folder")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise PathError(f"{path}: no such file or folder")
    return list(dict.fromkeys(out))


def read_documents(path: Path) -> Iterator[tuple[int, Any] | Problem]:
    """(index, document) for each document of the file, then a Problem if the file cannot be read to its end."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        yield Problem(str(path), None, "?", "?", "(file)", f"cannot read it: {exc}")
        return
    count = 0
    try:
        for document in yaml.safe_load_all(text):
            yield count, document
            count += 1
    except yaml.YAMLError as exc:
        yield Problem(str(path), count, "?", "?", "(yaml)", _yaml_reason(exc))


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    return f"YAML syntax error{where}: {what}" + (f" ({context})" if context else "")


def validate_paths(paths: Sequence[str | Path]) -> Report:
    """Read and check every document of ``paths`` offline (PathError if a path is missing or holds no YAML)."""
    report = Report()
    for path in yaml_files(paths):
        count = 0
        for item in read_documents(path):
            if isinstance(item, Problem):
                report.problems.append(item)
                count = max(count, (item.document or 0) + 1)
                continue
            index, document = item
            count = index + 1
            check_document(str(path), index, document, report)
        report.documents[str(path)] = count
    return report


def check_document(file: str, index: int, document: Any, report: Report) -> None:
    """Add what one document is found to have (see the module's decisions) to ``report``."""
    if document is None:
        return
    kind, name = _identity(document)

    def add(field: str, reason: str, note: bool = False) -> None:
        report.problems.append(Problem(file, index, kind, name, field, reason, note))

    if isinstance(document, dict):
        api = document.get("apiVersion")
        group = api.rpartition("/")[0] if isinstance(api, str) else None
        if group != chaosmesh.GROUP and not (api is None and kind in (*chaosmesh.KINDS, *chaosmesh.OTHER_KINDS)):
            reason = "not a Chaos Mesh object (skipped)" if api else "no apiVersion: not a Kubernetes object (skipped)"
            add("(top level)", reason, note=True)
            return
        if api == chaosmesh.API_VERSION and kind in chaosmesh.OTHER_KINDS:
            add("kind", f"Drillbit has no CRD schema for {kind}: not validated", note=True)
            return
    found = chaosmesh.problems(document)
    for path, reason in found:
        add(path, reason)
    if isinstance(document, dict) and kind in chaosmesh.KINDS and document.get("apiVersion") == chaosmesh.API_VERSION:
        report.objects.append(ChaosObject(file, index, kind, name, document, valid=not found))


def _identity(document: Any) -> tuple[str, str]:
    """(kind, name) of a document for a report line; "?" where it has none."""
    if not isinstance(document, dict):
        return "?", "?"
    meta = document.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    kind = document.get("kind")
    return (kind if isinstance(kind, str) and kind else "?"), (name if isinstance(name, str) and name else "?")


# ------------------------------------------------------------------------------------------------ against a cluster


@dataclass(frozen=True)
class Selection:
    """One pod selection of an object: where its selector is, and what it must find in the selected pods."""

    path: str  # of the selector
    selector: dict[str, Any]
    containers: list[str] | None  # containerNames, if the kind selects containers and names some
    containers_path: str
    volume: str | None  # an IOChaos's volumePath
    volume_path: str


def selections(manifest: dict[str, Any]) -> Iterator[Selection]:
    """Every pod selection of an object: each chaos spec's ``selector`` (embedded ones too) and a NetworkChaos's
    ``target.selector``."""
    for path, kind, spec in webhook.embedded_objects(manifest.get("kind"), manifest.get("spec")):
        if kind not in webhook.SELECTOR_KINDS or not isinstance(spec.get("selector"), dict):
            continue
        names = spec.get("containerNames") if kind in CONTAINER_KINDS else None
        containers = [str(n) for n in names] if isinstance(names, list) and names else None
        volume = spec.get("volumePath") if kind == "IOChaos" else None
        yield Selection(
            f"{path}.selector", spec["selector"], containers, f"{path}.containerNames", volume, f"{path}.volumePath"
        )
        target = spec.get("target")
        if isinstance(target, dict) and isinstance(target.get("selector"), dict):
            where = f"{path}.target"
            yield Selection(f"{where}.selector", target["selector"], None, "", None, "")


class ClusterView:
    """What the checks read from the API server, each namespace and pod list read once."""

    def __init__(self, connection: KubeConnection) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(connection.api_client())
        self._namespaces: dict[str, bool | None] = {}
        self._pods: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def _read(self, what: str, read: Any) -> Any:
        """``read()``'s answer; None for a 404, ``False`` for another refusal; FaultError when unreachable."""
        from kubernetes.client.exceptions import ApiException

        from drillbit.faults.platform import kubernetes as k8s

        try:
            return read(_request_timeout=k8s.REQUEST_TIMEOUT)
        except ApiException as exc:
            return None if exc.status == 404 else False
        except k8s.TRANSPORT_ERRORS as exc:
            raise FaultError(f"cannot reach the API server to read {what}: {k8s.api_error(exc)}") from exc

    def namespace_exists(self, name: str) -> bool | None:
        """Whether the namespace exists; None when the API server will not say (e.g. 403: no right to read it)."""
        if name not in self._namespaces:
            found = self._read(f"namespace {name}", lambda **kw: self.core.read_namespace(name, **kw))
            self._namespaces[name] = None if found is False else found is not None
        return self._namespaces[name]

    def pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """The pods ``list_pods`` finds (FaultError if the listing is refused or the server unreachable)."""
        from drillbit.faults.platform.kubernetes import list_pods

        key = (namespace, label_selector)
        if key not in self._pods:
            self._pods[key] = list_pods(self.core, namespace, label_selector)
        return self._pods[key]

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod, or None if it does not exist (FaultError if reading it is refused)."""
        found = self._read(f"pod {namespace}/{name}", lambda **kw: self.core.read_namespaced_pod(name, namespace, **kw))
        if found is False:
            raise FaultError(f"reading pod {namespace}/{name} was refused by the API server")
        return None if found is None else self.core.api_client.sanitize_for_serialization(found)


def check_cluster(report: Report, connection: KubeConnection) -> None:
    """Check every object of ``report`` that passed offline against the cluster ``connection`` reaches, adding what
    is found to it. FaultError when the API server cannot be reached or refuses a listing."""
    view = ClusterView(connection)
    for obj in report.objects:
        if not obj.valid:
            reason = "not checked against the cluster: fix its problems first"
            report.problems.append(Problem(obj.file, obj.document, obj.kind, obj.name, "(top level)", reason, True))
            continue
        meta = obj.manifest.get("metadata") or {}
        for selection in selections(obj.manifest):
            for path, reason in selection_problems(selection, view, meta.get("namespace") or "default"):
                report.problems.append(Problem(obj.file, obj.document, obj.kind, obj.name, path, reason))


def selection_problems(selection: Selection, view: ClusterView, own_namespace: str) -> list[tuple[str, str]]:
    """What one pod selection finds wrong in the cluster. A selector without namespaces selects in the object's own
    namespace (Chaos Mesh's ``PodSelector.Default``)."""
    selector = selection.selector
    explicit = selector.get("pods")
    if isinstance(explicit, dict) and explicit:
        out, pods = _explicit_pods(explicit, selection.path, view)
    else:
        out, pods = _selected_pods(selector, selection.path, view, own_namespace)
    if not pods:
        return out
    if selection.containers:
        out += _missing_containers(selection, pods)
    if isinstance(selection.volume, str) and selection.volume:
        out += _missing_volume(selection, pods)
    return out


def _explicit_pods(explicit: dict[str, Any], path: str, view: ClusterView) -> tuple[list[tuple[str, str]], list]:
    """``selector.pods`` (namespace → pod names): every namespace and pod exists."""
    out, pods = [], []
    for namespace, names in explicit.items():
        if view.namespace_exists(str(namespace)) is False:
            out.append((f"{path}.pods.{namespace}", f"namespace {namespace} does not exist"))
            continue
        for i, name in enumerate(names if isinstance(names, list) else []):
            pod = view.pod(str(namespace), str(name))
            if pod is None:
                out.append((f"{path}.pods.{namespace}[{i}]", f"pod {namespace}/{name} does not exist"))
            else:
                pods.append(pod)
    return out, pods


def _selected_pods(
    selector: dict[str, Any], path: str, view: ClusterView, own_namespace: str
) -> tuple[list[tuple[str, str]], list]:
    """The namespaces exist, and the label, expression, annotation, phase and node selectors select some pod."""
    from drillbit.faults.platform.kubernetes import selector_string

    namespaces = selector.get("namespaces") or [own_namespace]
    out, pods = [], []
    labels = selector_string(selector)
    for i, namespace in enumerate(namespaces):
        if view.namespace_exists(namespace) is False:
            where = f"{path}.namespaces[{i}]" if selector.get("namespaces") else path
            out.append((where, f"namespace {namespace} does not exist"))
            continue
        pods += [p for p in view.pods(namespace, labels) if _also_selected(p, selector)]
    if not pods and not out:
        what = f"labels {labels!r}" if labels else "no label selector"
        out.append((path, f"selects no pod (namespaces {', '.join(namespaces)}; {what})"))
    return out, pods


def _also_selected(pod: dict[str, Any], selector: dict[str, Any]) -> bool:
    """Chaos Mesh's annotation, phase and node selectors, applied to a listed pod."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    wanted = selector.get("annotationSelectors") or {}
    if any(annotations.get(k) != v for k, v in wanted.items()):
        return False
    phases = selector.get("podPhaseSelectors") or []
    if phases and (pod.get("status") or {}).get("phase") not in phases:
        return False
    nodes = selector.get("nodes") or []
    return not nodes or (pod.get("spec") or {}).get("nodeName") in nodes


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return (pod.get("spec") or {}).get("containers") or []


def _pod_name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _missing_containers(selection: Selection, pods: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each named container is a container of every selected pod (Chaos Mesh injects into the containers of each
    pod whose name is listed; a pod without one gets nothing)."""
    out = []
    for i, name in enumerate(selection.containers or []):
        lacking = [_pod_name(p) for p in pods if name not in {c.get("name") for c in _containers(p)}]
        if lacking:
            seen = sorted({str(c.get("name")) for p in pods for c in _containers(p)})
            reason = f"no container {name!r} in {len(lacking)} of {len(pods)} selected pods ({', '.join(lacking[:3])}"
            reason += f"{', …' if len(lacking) > 3 else ''}); their containers: {', '.join(seen) or 'none'}"
            out.append((f"{selection.containers_path}[{i}]", reason))
    return out


def _missing_volume(selection: Selection, pods: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """An IOChaos's ``volumePath`` is the ``mountPath`` of a volume in the selected containers of every selected pod
    (the named ones, else the first: Chaos Mesh's container selector)."""
    lacking, mounts = [], set()
    for pod in pods:
        containers = _containers(pod)
        chosen = [c for c in containers if c.get("name") in (selection.containers or [])] or containers[:1]
        paths = {m.get("mountPath") for c in chosen for m in c.get("volumeMounts") or []}
        mounts |= {str(p) for p in paths}
        if selection.volume not in paths:
            lacking.append(_pod_name(pod))
    if not lacking:
        return []
    reason = f"{selection.volume!r} is not the mountPath of a volume in {len(lacking)} of {len(pods)} selected pods "
    reason += f"({', '.join(lacking[:3])}{', …' if len(lacking) > 3 else ''}); mounted there: "
    reason += ", ".join(sorted(mounts)) or "nothing"
    return [(selection.volume_path, reason)]
