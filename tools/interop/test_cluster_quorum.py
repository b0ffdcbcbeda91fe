"""The metadata quorum across real `spindle serve` processes.

Three brokers started with `--controller-quorum-voters` elect one Raft
leader among themselves over their controller listeners; when the leader is
killed with -9 the other two elect a new one in a higher term; the killed
broker restarts on its data directory (Raft log and vote in
DATA_DIR/raft) and rejoins as a follower. Each node's view comes from its
admin endpoint `/v1/cluster`.

Every broker also registers with the active controller (the quorum
leader) and sends heartbeats; the controller fences a broker whose
heartbeats stop for `broker.session.timeout.ms`, and a restarted broker
registers again with a new epoch and is unfenced once caught up. The
committed metadata each node applied is in `/v1/cluster` too.

Partition replication is not built yet: these brokers still serve their
partitions alone. What is tested here is the quorum and the brokers'
lifecycle in it.
"""

import json
import time

from helpers import wait_until
from spindle_broker import free_port


def view(b):
    status, body = b.http_get("/v1/cluster")
    assert status == 200
    return json.loads(body)


def quorum(b):
    return view(b)["quorum"]


def agreed_leader(brokers):
    """(leader id, term) if every broker names the same leader in the same
    term and exactly that broker says it leads; else None."""
    try:
        views = {b.node_id: quorum(b) for b in brokers}
    except OSError:
        return None
    leaders = {(q["leader"], q["term"]) for q in views.values()}
    if len(leaders) != 1:
        return None
    leader, term = leaders.pop()
    if leader is None:
        return None
    roles = {n: q["role"] for n, q in views.items()}
    if roles.get(leader) != "leader" or any(r != "follower" for n, r in roles.items() if n != leader):
        return None
    return leader, term


SESSION_MS = 3000
LIFECYCLE = ("--broker-session-timeout-ms", str(SESSION_MS), "--broker-heartbeat-interval-ms", "300")


def three_voters(broker_factory):
    ports = [free_port() for _ in range(3)]
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(ports))
    brokers = []
    for i in range(3):
        b = broker_factory("--node-id", str(i), "--controller-quorum-voters", voters, *LIFECYCLE)
        b.node_id = i
        brokers.append(b)
    return brokers


def brokers_seen(b):
    """{broker id: (epoch, fenced)} in this node's committed metadata."""
    return {x["id"]: (x["epoch"], x["fenced"]) for x in view(b)["metadata"]["brokers"]}


def test_three_voters_elect_a_leader_and_replace_it_after_kill_9(broker_factory):
    brokers = three_voters(broker_factory)
    for b in brokers:
        v = view(b)
        assert v["mode"] == "quorum" and v["node_id"] == b.node_id
        assert [x["id"] for x in v["voters"]] == [0, 1, 2]

    leader, term = wait_until(lambda: agreed_leader(brokers), timeout=15, what="one agreed quorum leader")
    # A new leader commits an entry of its term: every node has it.
    wait_until(lambda: all(quorum(b)["commit_index"] >= 1 for b in brokers), what="commit on every voter")

    dead = brokers[leader]
    dead.kill9()
    survivors = [b for b in brokers if b is not dead]
    new_leader, new_term = wait_until(
        lambda: agreed_leader(survivors), timeout=15, what="a new leader among the survivors"
    )
    assert new_leader != leader and new_term > term

    # The killed voter restarts from its Raft log and vote, and follows.
    dead.start()
    wait_until(lambda: agreed_leader(brokers) == (new_leader, new_term), timeout=15, what="the restarted voter follows")
    raft_dir = dead.data_dir / "raft"
    assert (raft_dir / "hard-state").exists()
    assert any(p.suffix == ".log" for p in raft_dir.iterdir())
    # It catches up with the leader's commits (which keep coming: brokers
    # register and get unfenced meanwhile).
    target = quorum(brokers[new_leader])["commit_index"]
    wait_until(lambda: quorum(dead)["commit_index"] >= target, what="the restarted voter caught up")


def test_brokers_register_and_a_silent_one_is_fenced_then_rejoins(broker_factory):
    brokers = three_voters(broker_factory)

    def all_unfenced():
        seen = [brokers_seen(b) for b in brokers]
        ok = all(set(s) == {0, 1, 2} and not any(f for _, f in s.values()) for s in seen)
        return ok and all(s == seen[0] for s in seen) and seen[0]

    before = wait_until(all_unfenced, timeout=20, what="three registered, unfenced brokers on every node")
    leader, _ = wait_until(lambda: agreed_leader(brokers), timeout=15, what="a quorum leader")
    assert view(brokers[leader])["controller_active"] is True
    for b in brokers:
        reg = view(b)["registration"]
        assert reg == {"broker_epoch": before[b.node_id][0], "fenced": False}, (b.node_id, reg)
    # The controller also created __consumer_offsets in the metadata.
    def offsets_topic():
        topics = {t["name"]: t["partitions"] for t in view(brokers[leader])["metadata"]["topics"]}
        return topics.get("__consumer_offsets") == 50

    wait_until(offsets_topic, what="__consumer_offsets in the metadata")

    # A follower dies without a word: fenced after the session timeout,
    # as every node's metadata shows; the others stay unfenced.
    victim = brokers[(leader + 1) % 3]
    victim.kill9()
    others = [b for b in brokers if b is not victim]
    killed_at = time.monotonic()
    wait_until(
        lambda: all(brokers_seen(b)[victim.node_id][1] for b in others),
        timeout=SESSION_MS / 1000 + 10,
        what="the silent broker fenced",
    )
    assert time.monotonic() - killed_at >= SESSION_MS / 1000 * 0.8, "fenced before its session could expire"
    assert all(not brokers_seen(b)[o.node_id][1] for b in others for o in others)

    # It restarts: a new registration (higher epoch), unfenced again.
    victim.start()
    wait_until(
        lambda: all(
            # A node that just started may not have replayed the log yet.
            brokers_seen(b).get(victim.node_id, (-1, True))[0] > before[victim.node_id][0]
            and not brokers_seen(b)[victim.node_id][1]
            for b in brokers
        ),
        timeout=20,
        what="the restarted broker registered and unfenced",
    )


def leads(b):
    """{broker id: partitions it leads} in this node's committed metadata."""
    return {x["id"]: x["leads"] for x in view(b)["metadata"]["brokers"]}


def test_a_stopping_broker_hands_its_leaderships_over_first(broker_factory):
    brokers = three_voters(broker_factory)
    leader, _ = wait_until(lambda: agreed_leader(brokers), timeout=15, what="a quorum leader")
    victim = brokers[(leader + 1) % 3]
    # __consumer_offsets (50 partitions, replication factor 3) spreads
    # leadership over the three brokers once they are unfenced.
    wait_until(lambda: leads(brokers[leader]).get(victim.node_id, 0) > 0, timeout=20, what="the victim leading some partitions")

    victim.stop()  # SIGTERM; asserts a clean exit 0
    assert "controlled shutdown complete" in victim.log_text(), victim.log_tail()
    for b in brokers:
        if b is victim:
            continue
        after = leads(b)
        assert after[victim.node_id] == 0, after
        assert sum(after.values()) == 50, f"every partition still has a leader: {after}"


def test_a_single_node_reports_no_quorum(broker):
    status, body = broker.http_get("/v1/cluster")
    assert status == 200
    assert json.loads(body)["mode"] == "single-node"
