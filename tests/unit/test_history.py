"""The history checker on crafted histories: clean, a lost acknowledged tx, a duplicate, diverging nodes, ..."""

from __future__ import annotations

import hashlib

from drillbit.history import Block, Op, check, duplicate_submissions

NODES = ("node-0", "node-1", "node-2")


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest().upper()


def chain(txs_by_height: dict[int, list[str]], lo: int = 10, hi: int = 15, fork: str = "") -> list[Block]:
    """A linked chain lo..hi; ``fork`` changes every hash (a node on another history)."""
    blocks, prev = [], h(f"{fork}block-{lo - 1}")
    for height in range(lo, hi + 1):
        txs = tuple(txs_by_height.get(height, []))
        this = h(f"{fork}block-{height}-{','.join(txs)}")
        blocks.append(Block(height, this, prev, txs))
        prev = this
    return blocks


def same_everywhere(blocks: list[Block]) -> dict[str, list[Block]]:
    return {n: list(blocks) for n in NODES}


def ack(tx: str, height: int, node: str = "node-0", at: float = 1.0) -> Op:
    return Op(tx, node, at, "ok", at + 1, height)


def test_a_clean_history_is_valid():
    a, b, c = h("a"), h("b"), h("c")
    ops = [ack(a, 11), ack(b, 12, "node-1"), Op(c, "node-2", 3.0, "info", None, None, "timed out")]
    result = check(ops, same_everywhere(chain({11: [a], 12: [b], 14: [c]})), 10, 15)
    assert result.valid, result.summary()
    assert result.acknowledged == 2 and result.unknown_committed == 1
    assert "all 2 acknowledged txs present exactly once" in result.summary()


def test_an_unknown_op_that_never_committed_is_fine():
    a, lost_in_flight = h("a"), h("x")
    ops = [ack(a, 11), Op(lost_in_flight, "node-2", 2.0, "info", error="connection reset")]
    result = check(ops, same_everywhere(chain({11: [a]})), 10, 15)
    assert result.valid and result.unknown_committed == 0


def test_a_lost_acknowledged_tx_is_caught_on_every_node():
    a, b = h("a"), h("b")
    ops = [ack(a, 11), ack(b, 13)]
    result = check(ops, same_everywhere(chain({11: [a]})), 10, 15)  # b was acknowledged but is nowhere
    assert not result.valid
    assert {x["node"] for x in result.lost} == set(NODES) and all(x["tx"] == b for x in result.lost)
    assert "3 lost" in result.summary()


def test_a_tx_missing_on_one_node_only_is_lost_there():
    a = h("a")
    good = chain({11: [a]})
    chains = {"node-0": good, "node-1": good, "node-2": chain({}, fork="")}  # same heights, a missing: hashes differ
    result = check([ack(a, 11)], chains, 10, 15)
    assert not result.valid
    assert [x["node"] for x in result.lost] == ["node-2"]
    assert result.diverged and result.diverged[0]["height"] == 11


def test_a_duplicate_is_caught():
    a = h("a")
    result = check([ack(a, 11)], same_everywhere(chain({11: [a], 14: [a]})), 10, 15)
    assert not result.valid
    assert len(result.duplicated) == 3 and result.duplicated[0]["heights"] == [11, 14]


def test_a_duplicate_of_an_unknown_op_is_caught_too():
    x = h("x")
    ops = [Op(x, "node-1", 1.0, "info", error="timeout")]
    result = check(ops, same_everywhere(chain({12: [x, x]})), 10, 15)
    assert not result.valid and result.duplicated[0]["heights"] == [12, 12]


def test_diverging_nodes_are_caught():
    a, b = h("a"), h("b")
    left = chain({11: [a]})
    right = chain({11: [b]}, fork="other-")  # a split brain: two histories of the same heights
    chains = {"node-0": left, "node-1": left, "node-2": right}
    result = check([ack(a, 11, "node-0"), ack(b, 11, "node-2")], chains, 10, 15)
    assert not result.valid
    assert [d["height"] for d in result.diverged] == list(range(10, 16))
    assert result.diverged[0]["hashes"]["node-2"] != result.diverged[0]["hashes"]["node-0"]
    lost = {(x["node"], x["tx"]) for x in result.lost}
    assert lost == {("node-2", a), ("node-0", b), ("node-1", b)}


def test_a_node_missing_heights_is_caught():
    a = h("a")
    full = chain({11: [a]})
    chains = {"node-0": full, "node-1": full, "node-2": full[:3]}  # stalled at 12
    result = check([ack(a, 11)], chains, 10, 15)
    assert not result.valid and result.missing_blocks == {"node-2": [13, 14, 15]}
    assert not result.lost and not result.diverged


def test_a_broken_hash_link_is_caught():
    blocks = chain({})
    bad = Block(13, blocks[3].hash, "NOT-THE-PREVIOUS-HASH", ())
    tampered = [*blocks[:3], bad, *blocks[4:]]
    result = check([], same_everywhere(tampered), 10, 15)
    assert not result.valid and {x["height"] for x in result.broken_links} == {13}


def test_an_acknowledged_tx_at_another_height_is_moved():
    a = h("a")
    result = check([ack(a, 11)], same_everywhere(chain({12: [a]})), 10, 15)
    assert not result.valid and result.moved[0]["found"] == [12] and not result.lost


def test_a_definitely_failed_tx_must_not_be_committed():
    a = h("a")
    ops = [Op(a, "node-0", 1.0, "fail", 1.1, error="CheckTx code 2")]
    result = check(ops, same_everywhere(chain({12: [a]})), 10, 15)
    assert not result.valid and len(result.failed_committed) == 3


def test_blocks_outside_the_range_are_ignored():
    a = h("a")
    chains = same_everywhere(chain({11: [a], 20: [a]}, hi=20))
    assert check([ack(a, 11)], chains, 10, 15).valid


def test_evidence_is_bounded_but_counts_are_exact():
    txs = [h(str(i)) for i in range(40)]
    result = check([ack(t, 11) for t in txs], same_everywhere(chain({})), 10, 15)
    d = result.to_dict(limit=5)
    assert d["lost_count"] == 120 and len(d["lost"]) == 5 and d["valid"] is False


def test_duplicate_submissions_by_the_client():
    a, b = h("a"), h("b")
    assert duplicate_submissions([ack(a, 1), ack(b, 2), Op(a, "node-1", 3.0, "info")]) == [a]
