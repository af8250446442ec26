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
