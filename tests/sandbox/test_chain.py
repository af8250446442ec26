"""Unit tests of the sandbox chain's state machine (vesandbox.chain) on worked examples."""

import hashlib
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "infra" / "sandbox"))

import pytest
from vesandbox import chain

CHAIN_ID = "virtengine-sandbox"
GENESIS = {"providers": [{"owner": "provider1", "host_uri": "http://127.0.0.1:18443", "attributes": []}]}
T0 = "2026-11-25T16:00:00.000000Z"


def tx(kind: str, signer: str, msg: dict, nonce: str = "n") -> bytes:
    return json.dumps({"type": kind, "signer": signer, "nonce": nonce, "msg": msg}).encode()


def create_deployment(owner: str = "tenant1", dseq: int = 7, price: int = 100, deposit: int = 5000, **kw) -> bytes:
    group = {
        "name": "web",
        "resources": {"cpu": 500, "memory": 512 * 2**20, "storage": 2**30},
        "count": 1,
        "price": {"denom": "uve", "amount": str(price)},
    }
    msg = {"owner": owner, "dseq": dseq, "groups": [group], "deposit": {"denom": "uve", "amount": str(deposit)}}
    return tx("deployment/create", kw.get("signer", owner), msg, kw.get("nonce", "c"))


def order_id(owner: str = "tenant1", dseq: int = 7) -> dict:
    return {"owner": owner, "dseq": dseq, "gseq": 1, "oseq": 1}


def bid(price: int, provider: str = "provider1", dseq: int = 7, nonce: str = "b") -> bytes:
    msg = {"provider": provider, "order_id": order_id(dseq=dseq), "price": {"denom": "uve", "amount": str(price)}}
    return tx("market/bid/create", provider, msg, nonce)


def bid_id(provider: str = "provider1", dseq: int = 7) -> dict:
    return {**order_id(dseq=dseq), "provider": provider}


def lease(signer: str = "tenant1", provider: str = "provider1", dseq: int = 7) -> bytes:
    return tx("market/lease/create", signer, {"bid_id": bid_id(provider, dseq)}, f"l-{signer}")


def close(owner: str = "tenant1", dseq: int = 7, nonce: str = "x") -> bytes:
    return tx("deployment/close", owner, {"owner": owner, "dseq": dseq}, nonce)


class Chain:
    """A state plus a block builder with deterministic times."""

    def __init__(self) -> None:
        self.state = chain.State(CHAIN_ID, GENESIS)
        self.blocks: list[dict] = []

    def block(self, *txs: bytes) -> list[dict]:
        h = self.state.height + 1
        b = chain.make_block(
            CHAIN_ID, h, f"2026-11-25T16:00:{h:02d}.000000Z", "node-0", self.state.last_block_hash, list(txs)
        )
        self.blocks.append(b)
        return self.state.apply_block(b)

    def empty_blocks(self, n: int) -> None:
        for _ in range(n):
            self.block()


def state_of(event: dict) -> dict:
    attrs = {a["key"]: a["value"] for a in event["attributes"]}
    return json.loads(attrs["state"])


def test_full_lifecycle_settles_the_lease() -> None:
    c = Chain()
    [res] = c.block(create_deployment(price=100, deposit=5000))  # height 1
    assert res["code"] == 0, res
    assert [e["type"] for e in res["events"]] == ["deployment", "order", "escrow_account"]
    orders = c.state.orders_list(owner="tenant1")["orders"]
    assert [(o["id"], o["state"]) for o in orders] == [
        ({"owner": "tenant1", "dseq": "7", "gseq": 1, "oseq": 1}, "open")
    ]
    assert orders[0]["spec"]["price"] == {"denom": "uve", "amount": "100"}

    [res] = c.block(bid(80))  # height 2
    assert res["code"] == 0, res
    [res] = c.block(lease())  # height 3: the lease starts here
    assert res["code"] == 0, res
    assert {e["type"] for e in res["events"]} == {"order", "bid", "lease", "escrow_payment"}
    assert c.state.order_info("tenant1", "7", "1", "1")["state"] == "active"
    [item] = c.state.leases_list(provider="provider1")["leases"]
    assert item["lease"]["state"] == "active" and item["lease"]["price"]["amount"] == "80"
    assert item["escrow_payment"]["state"]["state"] == "open"

    c.empty_blocks(6)  # heights 4..9
    [res] = c.block(close())  # height 10: 7 blocks since the lease
    assert res["code"] == 0, res
    kinds = [e["type"] for e in res["events"]]
    assert kinds[0] == "deployment" and kinds[-1] == "escrow_account" and "settlement" in kinds

    [record] = c.state.settlements_by_order("tenant1", "7", "1", "1")["settlements"]
    assert record["amount"] == {"denom": "uve", "amount": str(80 * 7)}
    assert record["blocks"] == "7" and record["rate"]["amount"] == "80"
    assert record["settled_height"] == "10" and record["settled_at"] == "2026-11-25T16:00:10.000000Z"
    assert record["order_id"] == {"owner": "tenant1", "dseq": "7", "gseq": 1, "oseq": 1}
    assert record["provider"] == "provider1" and record["owner"] == "tenant1"
    settlement_event = next(e for e in res["events"] if e["type"] == "settlement")
    assert state_of(settlement_event) == record

    [account] = c.state.accounts_list(owner="tenant1")["accounts"]
    assert account["id"] == {"scope": "deployment", "xid": "tenant1/7"}
    assert account["state"]["state"] == "closed"
    assert account["state"]["transferred"]["amount"] == "560"
    [payment] = c.state.payments_list(xid="tenant1/7")["payments"]
    assert payment["payment_id"] == "1/1/provider1"
    assert payment["state"]["state"] == "closed" and payment["state"]["withdrawn"]["amount"] == "560"
    assert c.state.deployment_info("tenant1", "7")["deployment"]["state"] == "closed"
    assert c.state.order_info("tenant1", "7", "1", "1")["state"] == "closed"
    assert c.state.bid_info("tenant1", "7", "1", "1", "provider1")["bid"]["state"] == "closed"
    lease_item = c.state.lease_info("tenant1", "7", "1", "1", "provider1")
    assert lease_item["lease"]["state"] == "closed" and lease_item["lease"]["closed_on"] == "10"


def test_settlement_is_capped_at_the_escrow_balance() -> None:
    c = Chain()
    c.block(create_deployment(price=100, deposit=250), bid(100))
    c.block(lease())  # height 2
    c.empty_blocks(5)
    c.block(close())  # height 8: 6 blocks x 100 = 600 owed, 250 in escrow
    [record] = c.state.settlements_by_order("tenant1", "7", "1", "1")["settlements"]
    assert record["amount"]["amount"] == "250"
    [payment] = c.state.payments_list()["payments"]
    assert payment["state"]["state"] == "overdrawn"


def test_events_carry_the_rest_json() -> None:
    c = Chain()
    [res] = c.block(create_deployment())
    by_type = {e["type"]: e for e in res["events"]}
    assert by_type["order"]["attributes"][0] == {"key": "id", "value": "tenant1/7/1/1"}
    assert state_of(by_type["order"]) == c.state.order_info("tenant1", "7", "1", "1")
    assert state_of(by_type["deployment"]) == c.state.deployment_info("tenant1", "7")
    assert state_of(by_type["escrow_account"]) == c.state.accounts_list()["accounts"][0]
    [res] = c.block(bid(90))
    assert state_of(res["events"][0]) == c.state.bids_list()["bids"][0]


@pytest.mark.parametrize(
    ("raw", "code", "fragment"),
    [
        (b"{not json", chain.CODE_DECODE, "not UTF-8 JSON"),
        (b"[1, 2]", chain.CODE_DECODE, "must be a JSON object"),
        (b"\xff\xfe", chain.CODE_DECODE, "not UTF-8 JSON"),
        (tx("deployment/explode", "a", {}), chain.CODE_UNKNOWN_TYPE, "unknown tx type 'deployment/explode'"),
        (json.dumps({"signer": "a", "msg": {}}).encode(), chain.CODE_INVALID_REQUEST, "missing field type"),
        (json.dumps({"type": "deployment/close", "msg": {}}).encode(), chain.CODE_INVALID_REQUEST, "field signer"),
        (tx("deployment/close", "a", {"owner": "a"}), chain.CODE_INVALID_REQUEST, "missing field msg.dseq"),
        (tx("deployment/close", "a", {"owner": "a", "dseq": -1}), chain.CODE_INVALID_REQUEST, "msg.dseq"),
        (tx("market/bid/create", "p", {"provider": "p", "order_id": order_id()}), 18, "missing field msg.price"),
        (
            tx(
                "market/bid/create",
                "p",
                {"provider": "p", "order_id": order_id(), "price": {"denom": "atom", "amount": "1"}},
            ),
            chain.CODE_INVALID_REQUEST,
            "msg.price.denom must be 'uve'",
        ),
        (tx("market/lease/create", "t", {"bid_id": order_id()}), 18, "missing field msg.bid_id.provider"),
        (b"x" * (chain.MAX_TX_BYTES + 1), chain.CODE_TOO_LARGE, "tx too large"),
    ],
)
def test_check_tx_rejects_bad_txs(raw: bytes, code: int, fragment: str) -> None:
    got_code, log = chain.State(CHAIN_ID, GENESIS).check_tx(raw)
    assert got_code == code
    assert fragment in log


def test_check_tx_accepts_good_txs() -> None:
    st = chain.State(CHAIN_ID, GENESIS)
    for raw in (create_deployment(), bid(1), lease(), close()):
        assert st.check_tx(raw) == (0, "")


def test_deliver_tx_errors_leave_state_unchanged() -> None:
    c = Chain()
    c.block(create_deployment(price=100))
    [above, unknown] = c.block(bid(101), bid(50, provider="nobody", nonce="u"))
    assert above["code"] == chain.CODE_PRICE_ABOVE_MAX and "above the order's max price 100uve" in above["log"]
    assert above["codespace"] == "market" and above["events"] == []
    assert unknown["code"] == chain.CODE_UNKNOWN_PROVIDER
    assert c.state.bids_list()["bids"] == []

    [ok, dup] = c.block(bid(90), bid(80, nonce="again"))
    assert ok["code"] == 0 and dup["code"] == chain.CODE_EXISTS

    [stranger] = c.block(lease(signer="mallory"))
    assert stranger["code"] == chain.CODE_UNAUTHORIZED
    assert "signer 'mallory' is not the order owner 'tenant1'" in stranger["log"]
    assert c.state.order_info("tenant1", "7", "1", "1")["state"] == "open"

    [impostor] = c.block(create_deployment(dseq=8, signer="mallory"))
    assert impostor["code"] == chain.CODE_UNAUTHORIZED
    assert c.state.deployment_info("tenant1", "8") is None

    c.block(close())
    [late] = c.block(bid(10, provider="provider1", nonce="late"))
    assert late["code"] == chain.CODE_INVALID_STATE and "is closed, not open" in late["log"]
    [missing] = c.block(bid(10, dseq=99))
    assert missing["code"] == chain.CODE_NOT_FOUND
    [again] = c.block(close(nonce="again"))
    assert again["code"] == chain.CODE_INVALID_STATE and "is closed, not active" in again["log"]
    # a failed tx is still committed and indexed
    rec, _, result = c.state.tx(chain.tx_hash(bid(10, provider="provider1", nonce="late")))
    assert (rec.height, result["code"]) == (c.state.height - 2, chain.CODE_INVALID_STATE)


def test_lease_marks_other_bids_lost() -> None:
    c = Chain()
    c.block(create_deployment(), tx("provider/create", "provider2", {"owner": "provider2", "host_uri": "h"}))
    c.block(bid(90), bid(70, provider="provider2"))
    [res] = c.block(lease(provider="provider2"))
    assert res["code"] == 0
    states = {b["bid"]["id"]["provider"]: b["bid"]["state"] for b in c.state.bids_list()["bids"]}
    assert states == {"provider1": "lost", "provider2": "active"}
    assert c.state.bids_list(state="lost")["pagination"]["total"] == "1"


def test_duplicate_tx_is_not_applied_twice() -> None:
    c = Chain()
    raw = create_deployment()
    [first, second] = c.block(raw, raw)
    assert first["code"] == 0
    assert second["code"] == chain.CODE_DUPLICATE
    [third] = c.block(raw)
    assert third["code"] == chain.CODE_DUPLICATE
    assert c.state.tx_index[chain.tx_hash(raw)] == chain.TxRecord(1, 0)
    assert len(c.state.deployments_list()["deployments"]) == 1
    assert c.state.check_tx(raw)[0] == chain.CODE_DUPLICATE
    # and a proposer never re-includes a committed tx
    block = c.state.build_block(T0, "node-1", [raw, bid(5), bid(5)])
    assert block["tx_hashes"] == [chain.tx_hash(bid(5))]


def test_same_blocks_give_the_same_state_on_every_node() -> None:
    a = Chain()
    a.block(create_deployment(), bid(50))
    a.block(lease(), bid(10, dseq=99))
    a.empty_blocks(2)
    a.block(close(), b"garbage")
    b = chain.State(CHAIN_ID, GENESIS)
    for blk in a.blocks:
        b.apply_block(json.loads(json.dumps(blk)))  # as read back from etcd
    assert b.height == a.state.height == 5
    assert b.last_block_hash == a.state.last_block_hash
    assert b.app_hash == a.state.app_hash
    assert [x["hash"] for x in b.blocks] == [x["hash"] for x in a.state.blocks]
    assert b.results == a.state.results
    for query in ("deployments_list", "orders_list", "bids_list", "leases_list", "accounts_list", "payments_list"):
        assert getattr(b, query)() == getattr(a.state, query)()


def test_block_must_extend_the_state() -> None:
    c = Chain()
    c.block()
    wrong_parent = chain.make_block(CHAIN_ID, 2, T0, "node-2", "ABC", [])
    with pytest.raises(chain.BlockError, match="does not extend"):
        c.state.apply_block(wrong_parent)
    skipped = chain.make_block(CHAIN_ID, 3, T0, "node-2", c.state.last_block_hash, [])
    with pytest.raises(chain.BlockError, match="height 3 != expected 2"):
        c.state.apply_block(skipped)
    tampered = chain.make_block(CHAIN_ID, 2, T0, "node-2", c.state.last_block_hash, [])
    tampered["time"] = "2030-01-01T00:00:00.000000Z"
    with pytest.raises(chain.BlockError, match="hash mismatch"):
        c.state.apply_block(tampered)
    assert c.state.height == 1


def test_block_hash_is_the_protocol_header_hash() -> None:

    b = chain.make_block(CHAIN_ID, 1, T0, "node-1", "", [b'{"a":1}'])
    header = {
        "chain_id": CHAIN_ID,
        "height": 1,
        "time": T0,
        "proposer": "node-1",
        "last_block_hash": "",
        "tx_hashes": [hashlib.sha256(b'{"a":1}').hexdigest().upper()],
    }
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    assert b["hash"] == hashlib.sha256(canonical).hexdigest().upper()


def test_pagination_walks_every_item_once() -> None:
    c = Chain()
    txs = [create_deployment(owner=f"tenant{i % 3}", dseq=100 + i, nonce=str(i)) for i in range(25)]
    c.block(*txs)
    seen: list[tuple[str, str]] = []
    key = None
    pages = 0
    while True:
        resp = c.state.deployments_list(page=chain.Page.parse("10", key))
        assert resp["pagination"]["total"] == "25"
        seen += [(d["deployment"]["id"]["owner"], d["deployment"]["id"]["dseq"]) for d in resp["deployments"]]
        pages += 1
        key = resp["pagination"]["next_key"]
        if key is None:
            break
    assert pages == 3 and len(seen) == 25 and len(set(seen)) == 25
    assert seen == sorted(seen, key=lambda x: (x[0], int(x[1])))

    one_owner = c.state.deployments_list(owner="tenant1", page=chain.Page.parse("3", None))
    assert one_owner["pagination"]["total"] == "8"
    assert {d["deployment"]["id"]["owner"] for d in one_owner["deployments"]} == {"tenant1"}
    assert one_owner["pagination"]["next_key"] is not None
    by_dseq = c.state.orders_list(owner="tenant1", dseq="104")
    assert [o["id"]["dseq"] for o in by_dseq["orders"]] == ["104"]
    assert c.state.orders_list(state="active")["orders"] == []
    assert chain.Page.parse("5000", None).limit == chain.MAX_PAGE_LIMIT
    with pytest.raises(ValueError, match=r"pagination\.key"):
        c.state.orders_list(page=chain.Page(10, "%%%"))
    with pytest.raises(ValueError, match=r"filters\.dseq"):
        c.state.orders_list(dseq="abc")


def test_genesis_registers_providers() -> None:
    st = chain.State(CHAIN_ID, GENESIS)
    assert st.providers_list()["providers"] == [
        {"owner": "provider1", "host_uri": "http://127.0.0.1:18443", "attributes": []}
    ]
    assert st.providers_list()["pagination"] == {"next_key": None, "total": "1"}


def test_provider_update_is_an_idempotent_upsert():
    state = chain.State("t")
    txs = [
        tx(
            "provider/update",
            "p",
            {"owner": "p", "host_uri": "h", "attributes": [{"key": "n", "value": str(n)}]},
            str(n),
        )
        for n in (1, 2)
    ]
    results = state.apply_block(state.build_block("2026-01-01T00:00:00Z", "node-0", txs))
    assert [r["code"] for r in results] == [0, 0]
    assert state.providers["p"]["attributes"] == [{"key": "n", "value": "2"}]
