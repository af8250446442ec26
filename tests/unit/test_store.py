from drillbit.model import Outcome, RunRecord, Sample, Verdict
from drillbit.store import ResultsStore


def test_records_and_samples_persist(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    rec = RunRecord("synthetic", "sandbox", {"checks": 3}, started_at=100.0)
    rec.finish([Verdict("tx confirmed", Outcome.FAIL, "1 of 3 failed", {"failures": 1})])
    store.save(rec, [Sample("tx", 101.0, True, 0.5), Sample("tx", 102.0, False, None, error="timeout")])
    again = ResultsStore(store.url)  # a new process would see the same
    got = again.get(rec.run_id)
    assert got.outcome == "fail" and got.verdicts[0].evidence == {"failures": 1}
    assert [r.run_id for r in again.list(flow="synthetic")] == [rec.run_id]
    df = again.samples("sandbox", probe="tx")
    assert df["ok"].tolist() == [True, False] and df["error"].tolist()[1] == "timeout"
    # saving again replaces, never duplicates
    store.save(rec, [Sample("tx", 101.0, True, 0.5)])
    assert len(again.samples("sandbox")) == 1 and len(again.list()) == 1


def test_samples_can_be_limited_to_one_flows_runs(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    synthetic = RunRecord("synthetic", "sandbox", {}, started_at=1.0).finish([])
    chaos = RunRecord("chaos-disk-pressure", "sandbox", {}, started_at=2.0).finish([])
    store.save(synthetic, [Sample("tx-submission", 1.0, True, 0.5)])
    store.save(chaos, [Sample("tx-submission", 2.0, False, 9.0, error="disk full")])
    assert store.samples("sandbox", probe="tx-submission", flow="synthetic")["ok"].tolist() == [True]
    assert len(store.samples("sandbox", probe="tx-submission")) == 2
