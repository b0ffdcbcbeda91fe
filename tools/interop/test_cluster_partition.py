"""A real network partition: three brokers, each in a network namespace of
its own, joined by a bridge (10.213.0.0/24) that this test process also
sits on. Under librdkafka acks=all load the partition leader's link is cut
(not the process: it keeps running, isolated), once for a leader that is
not the controller and once for one that is. The others fence it, elect a
new leader and take the load; when the link comes back the old leader
learns it was deposed, truncates what it appended alone, and rejoins the
ISR. Every record the producer saw acknowledged is in the final log at its
acknowledged offset; nothing acknowledged on the isolated side is lost,
because nothing was acknowledged there.

Needs root (network namespaces); `tools/test.sh` installs iproute2.
"""

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import kwire
from helpers import consume, unique, wait_until
from spindle_broker import READY_TIMEOUT_S, SPINDLE

NET = "10.213.0"
SESSION = ("--broker-session-timeout-ms", "3000", "--broker-heartbeat-interval-ms", "300")


def ip(*args):
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


class NsBroker:
    def __init__(self, i, ns, root, voters):
        self.node_id, self.ns, self.addr = i, ns, f"{NET}.{11 + i}"
        self.root, self.voters, self.proc, self.logs = root, voters, None, []
        self.bootstrap = f"{self.addr}:9092"

    def start(self):
        log = self.root / f"broker-{len(self.logs)}.log"
        self.logs.append(log)
        cmd = [
            "ip", "netns", "exec", self.ns, str(SPINDLE), "serve", "--node-id", str(self.node_id),
            "--data-dir", str(self.root / "data"), "--listen", self.bootstrap,
            "--admin-listen", f"{self.addr}:9644", "--cores", "1",
            "--controller-quorum-voters", self.voters, *SESSION,
        ]
        env = dict(os.environ, NO_COLOR="1", SPINDLE_LOG="info")
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()[-2000:]
            try:
                if kwire.metadata(self.addr, 9092, timeout=1.0)["brokers"]:
                    return self
            except (OSError, ConnectionError, AssertionError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"broker {self.node_id} not ready:\n{log.read_text()[-2000:]}")

    def cluster_view(self):
        with urllib.request.urlopen(f"http://{self.addr}:9644/v1/cluster", timeout=5) as r:
            return json.loads(r.read())

    def kill9(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def netns_cluster(tmp_path):
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for network namespaces")
    tag = uuid.uuid4().hex[:4]
    bridge = f"spx{tag}br"
    made_ns, brokers = [], []
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{NET}.1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for i in range(3):
            ns, veth = f"spx{tag}b{i}", f"spx{tag}v{i}"
            ip("netns", "add", ns)
            made_ns.append(ns)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", veth, "master", bridge)
            ip("link", "set", veth, "up")
            ip("netns", "exec", ns, "ip", "addr", "add", f"{NET}.{11 + i}/24", "dev", "eth0")
            ip("netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        voters = ",".join(f"{i}@{NET}.{11 + i}:9093" for i in range(3))
        for i in range(3):
            root = tmp_path / f"b{i}"
            root.mkdir()
            brokers.append(NsBroker(i, made_ns[i], root, voters))
        for b in brokers:
            b.start()
        yield brokers, (lambda b: f"spx{tag}v{b.node_id}")
    finally:
        for b in brokers:
            b.kill9()
        for ns in made_ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("also_controller", [False, True], ids=["leader", "leader-and-controller"])
def test_a_cut_off_leader_acknowledges_nothing_that_is_lost(netns_cluster, also_controller):
    brokers, veth_of = netns_cluster
    everyone = ",".join(b.bootstrap for b in brokers)

    def all_unfenced():
        try:
            views = [{x["id"]: x["fenced"] for x in b.cluster_view()["metadata"]["brokers"]} for b in brokers]
        except OSError:
            return False
        return all(v == {0: False, 1: False, 2: False} for v in views)

    wait_until(all_unfenced, timeout=30, what="three registered brokers across the namespaces")
    topic = unique("cut")
    # The cut-off broker leads the partition, and either is or is not also
    # the quorum leader (the controller). When it was both, the surviving
    # brokers kept waiting on the old controller past their session timeout,
    # the new controller fenced them, and the partition was left without a
    # leader (regression).
    controller = brokers[0].cluster_view()["quorum"]["leader"]
    if also_controller:
        first = controller
    else:
        first = next(b.node_id for b in brokers if b.node_id != controller)
    replicas = [first] + [b.node_id for b in brokers if b.node_id != first]
    a = AdminClient({"bootstrap.servers": everyone})
    a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1, replica_assignment=[replicas],
                              config={"min.insync.replicas": "2"})],
                    operation_timeout=30)[topic].result(timeout=40)

    def leader_and_isr(bootstrap):
        try:
            md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=5).topics[topic]
            p = md.partitions[0]
            return (p.leader, sorted(p.isrs)) if md.error is None and p.error is None else None
        except Exception:  # noqa: BLE001 - a broker that is cut off times out
            return None

    leader, _ = wait_until(lambda: (v := leader_and_isr(everyone)) and len(v[1]) == 3 and v, timeout=30,
                           what="a leader and a full ISR")
    assert leader == first, (leader, first)
    isolated = brokers[leader]
    others = [b for b in brokers if b is not isolated]

    reports = {}  # value -> (error, offset)
    stop = threading.Event()

    def produce():
        p = Producer({"bootstrap.servers": everyone, "acks": "all", "enable.idempotence": False,
                      "linger.ms": 5, "message.timeout.ms": 120000, "request.timeout.ms": 10000,
                      "socket.timeout.ms": 10000})
        i = 0
        while not stop.is_set():
            v = f"r{i:06d}".encode()
            p.produce(topic, value=v, partition=0,
                      on_delivery=lambda err, m, v=v: reports.__setitem__(v, (err, m.offset())))
            p.poll(0)
            i += 1
            time.sleep(0.002)
        assert p.flush(150) == 0

    t = threading.Thread(target=produce)
    t.start()
    try:
        # Some records acknowledged before the cut, then two more seconds of
        # load. A fixed two seconds was not always enough (a CI rehearsal
        # failed both cases with no record acknowledged before the cut): the
        # new cluster's first acks=all acknowledgement took 0.4-1.5 s here
        # across the namespaces, and up to 1.8 s on 127.0.0.1.
        wait_until(lambda: any(err is None for err, _ in list(reports.values())), timeout=60,
                   what="a first acknowledged record")
        time.sleep(2)
        ip("link", "set", veth_of(isolated), "down")
        cut_at = len(reports)
        survivors = ",".join(b.bootstrap for b in others)
        wait_until(lambda: (v := leader_and_isr(survivors)) and v[0] != leader and v[0] >= 0, timeout=45,
                   what="a new leader among the connected brokers")
        time.sleep(3)
        ip("link", "set", veth_of(isolated), "up")
        wait_until(lambda: (v := leader_and_isr(everyone)) and len(v[1]) == 3, timeout=60,
                   what="the cut-off broker back in the ISR")
        time.sleep(1)
    finally:
        stop.set()
        t.join()
    acked = {v: off for v, (err, off) in reports.items() if err is None}
    assert len(acked) > cut_at > 0, (len(acked), cut_at)
    log = consume(everyone, topic, 1, timeout=90)[0]
    at = {r.offset: r.value for r in log}
    missing = [(v, off) for v, off in acked.items() if at.get(off) != v]
    assert not missing, f"{len(missing)} acknowledged records lost or moved, e.g. {missing[:5]}"
    assert [r.offset for r in log] == list(range(len(log))), "gaps in the offsets"
