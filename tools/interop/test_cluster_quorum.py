"""The metadata quorum across real `spindle serve` processes.

Three brokers started with `--controller-quorum-voters` elect one Raft
leader among themselves over their controller listeners; when the leader is
killed with -9 the other two elect a new one in a higher term; the killed
broker restarts on its data directory (Raft log and vote in
DATA_DIR/raft) and rejoins as a follower. Each node's view comes from its
admin endpoint `/v1/cluster`.

Partition replication is not built yet: these brokers still serve their
partitions alone. What is tested here is the quorum itself.
"""

import json
import subprocess

from helpers import wait_until
from spindle_broker import SPINDLE, free_port


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


def test_three_voters_elect_a_leader_and_replace_it_after_kill_9(broker_factory):
    ports = [free_port() for _ in range(3)]
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(ports))
    brokers = []
    for i in range(3):
        b = broker_factory("--node-id", str(i), "--controller-quorum-voters", voters)
        b.node_id = i
        brokers.append(b)
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
    assert quorum(dead)["commit_index"] == quorum(brokers[new_leader])["commit_index"]


def test_a_single_node_reports_no_quorum(broker):
    status, body = broker.http_get("/v1/cluster")
    assert status == 200
    assert json.loads(body)["mode"] == "single-node"


def test_a_node_missing_from_the_voter_list_refuses_to_start(tmp_path):
    r = subprocess.run(
        [
            str(SPINDLE), "serve", "--data-dir", str(tmp_path / "data"), "--node-id", "7",
            "--controller-quorum-voters", f"0@127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode != 0
    assert "not in controller.quorum.voters" in r.stderr, r.stderr
