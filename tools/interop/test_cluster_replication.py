"""Partition replication across three real `spindle serve` processes.

The brokers run in cluster mode (`--controller-quorum-voters`, every node a
voter, a 3 s broker session). Topics are created through the Kafka API with
replication factor 3; the controller places the replicas, one leader per
partition, and followers pull from it. The client is confluent-kafka
(librdkafka); the cluster's state is each broker's own Metadata v7 (leader,
leader epoch, replicas, ISR), on which all running brokers must agree.

Proved: placement (three replicas, full ISR, each new partition led by its
preferred replica, leaders spread, librdkafka sees the same); acks=all is a
promise (an acknowledged record is in the log at exactly its acknowledged
offset with its key and value, after its leader is killed with -9
mid-stream and a new leader takes over in a higher epoch within seconds of
the session timeout, after the killed broker rejoins the ISR and the next
leader is killed too, and after all three brokers are killed and
restarted); min.insync.replicas (a dead follower leaves the ISR once fenced
and acks=all carries on while the ISR keeps min.insync.replicas members;
below that acks=all is refused with NOT_ENOUGH_REPLICAS, nothing appended,
while acks=1 still works).

With three voters, two dead nodes is a lost metadata quorum: no ISR can
shrink to one (Kafka in KRaft combined mode is the same; acks=all just times
out). So "ISR below min.insync.replicas" is one dead follower and a topic
with min.insync.replicas=3.
"""

import json
import socket
import struct
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

import kwire
from helpers import admin, consume, producer, topic_config, unique, wait_until
from spindle_broker import free_port

SESSION_MS = 3000
LIFECYCLE = ("--broker-session-timeout-ms", str(SESSION_MS), "--broker-heartbeat-interval-ms", "300")
SETTLE_S = 45  # a slow (2-core) machine catching up three brokers
NER = (KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND)


def cluster(broker_factory, observers=0):
    """Three voters, each also a broker, and `observers` brokers that are
    not voters (ids 3, 4, ...); returns once all are registered and unfenced."""
    ports = [free_port() for _ in range(3)]
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(ports))
    brokers = []
    for i in range(3 + observers):
        b = broker_factory("--node-id", str(i), "--controller-quorum-voters", voters, *LIFECYCLE)
        b.node_id = i
        brokers.append(b)

    def all_unfenced():
        try:
            views = [json.loads(b.http_get("/v1/cluster")[1])["metadata"]["brokers"] for b in brokers]
        except OSError:
            return False
        return all({x["id"]: x["fenced"] for x in v} == {b.node_id: False for b in brokers} for v in views)

    wait_until(all_unfenced, timeout=30, what="every broker registered and unfenced on every node")
    return brokers


def live(brokers):
    return [b for b in brokers if b.running]


def bootstrap(brokers):
    return ",".join(b.bootstrap for b in live(brokers))


def partitions(b, topic):
    """{partition: (error, leader, leader epoch, replicas, sorted ISR)} from
    broker b's own Metadata v7 response; None if the topic has an error."""
    body = struct.pack(">i", 1) + kwire.kstring(topic) + struct.pack(">?", False)
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
        s.sendall(kwire.request(kwire.API_METADATA, 7, 11, body))
        cid, resp = kwire.recv_frame(s)
    assert cid == 11
    r = kwire.Reader(resp)
    r.take(">i")  # throttle_time_ms
    brokers = r.array(lambda r: (r.take(">i"), r.string(), r.take(">i"), r.string()))
    _cluster_id, controller = r.string(), r.take(">i")
    # A client must be able to reach the controller it is told about
    # (librdkafka's admin client waits for it, without refreshing metadata).
    assert controller in [node for node, *_ in brokers], (b.node_id, controller, brokers)

    def ints(r):
        return r.array(lambda r: r.take(">i"))

    def partition(r):
        error, index, leader, epoch = r.take(">hiii")
        replicas, isr, _offline = ints(r), ints(r), ints(r)
        return index, (error, leader, epoch, tuple(replicas), tuple(sorted(isr)))

    def topic_(r):
        error, name, _internal = r.take(">h"), r.string(), r.take(">?")
        return name, (error, dict(r.array(partition)))

    error, parts = dict(r.array(topic_))[topic]
    return parts if error == 0 else None


def agreed(brokers, topic):
    """The topic's partitions if every running broker reports the same; else None."""
    try:
        views = [partitions(b, topic) for b in live(brokers)]
    except (OSError, ConnectionError, KeyError, struct.error):
        return None
    return views[0] if views[0] and all(v == views[0] for v in views) else None


def settled(brokers, topic, count, isr_size):
    """agreed(), once every partition has three replicas, a running leader
    and an ISR of isr_size running brokers; else None."""
    v = agreed(brokers, topic)
    up = {b.node_id for b in live(brokers)}
    ok = v and len(v) == count and all(
        e == 0 and leader in up and len(replicas) == 3 and len(isr) == isr_size and set(isr) <= up
        for e, leader, _, replicas, isr in v.values()
    )
    return v if ok else None


def create(brokers, name, count, min_isr, rf=3):
    a = admin(bootstrap(brokers))  # must outlive the future
    config = {"min.insync.replicas": str(min_isr)}
    fs = a.create_topics([NewTopic(name, num_partitions=count, replication_factor=rf, config=config)],
                         operation_timeout=30, request_timeout=30)
    fs[name].result(timeout=40)


def acks_all(brokers, **conf):
    # Generous socket and request timeouts: on this 2-core machine a cluster
    # still opening its 50 __consumer_offsets partitions can take seconds to
    # acknowledge, and a timed-out request is retried, which (without
    # idempotence) appends the records twice; the no-fault tests count them.
    c = {"acks": "all", "enable_idempotence": False, "message_timeout_ms": 90000, "request_timeout_ms": 30000,
         "socket_timeout_ms": 60000}
    c.update(conf)
    return producer(bootstrap(brokers), **c)


def send(p, topic, records, partition=None, each=None, timeout=120):
    """Produces (key, value) records; returns [(key, value, error, partition,
    offset)] in send order once every delivery report is in. each(i,
    reports) runs after the i-th record is handed to the producer."""
    reports = [None] * len(records)
    for i, (k, v) in enumerate(records):
        def done(err, msg, i=i):
            reports[i] = (err, msg.partition(), msg.offset())

        kw = {"key": k, "value": v, "on_delivery": done}
        if partition is not None:
            kw["partition"] = partition
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        if each:
            each(i, reports)
    assert p.flush(timeout) == 0, f"delivery reports missing after {timeout} s"
    return [(k, v, *rep) for (k, v), rep in zip(records, reports)]


def errors(results):
    return [e for _, _, e, _, _ in results if e is not None]


def acked_of(results):
    return [(part, off, k, v) for k, v, e, part, off in results if e is None]


def read_log(brokers, topic, count):
    return consume(bootstrap(brokers), topic, count, timeout=60)


def assert_acked_in_log(log, acked, produced):
    """Offsets run 0, 1, 2... with nothing nobody produced; every
    acknowledged (partition, offset, key, value) is there exactly."""
    at = {(r.partition, r.offset): (r.key, r.value) for recs in log.values() for r in recs}
    for p, recs in log.items():
        assert [r.offset for r in recs] == list(range(len(recs))), f"partition {p}: offsets not contiguous from 0"
        strange = [r for r in recs if r.value not in produced]
        assert not strange, f"partition {p}: records nobody produced: {strange[:3]}"
    lost = [(*a, at.get(a[:2])) for a in acked if at.get(a[:2]) != a[2:]]
    assert not lost, (
        f"{len(lost)} of {len(acked)} acknowledged records lost or elsewhere; "
        f"(partition, offset, key, value, found there): {lost[:5]}"
    )


def test_replicated_topic_metadata(broker_factory):
    brokers = cluster(broker_factory)
    topic = unique("r")
    create(brokers, topic, 3, min_isr=2)
    v = wait_until(lambda: settled(brokers, topic, 3, 3), timeout=30, what="three in-sync replicas per partition")
    for p, (_, leader, epoch, replicas, isr) in v.items():
        assert sorted(replicas) == [0, 1, 2] and isr == (0, 1, 2), (p, v[p])
        assert leader == replicas[0], f"partition {p} not led by its preferred replica: {v[p]}"
        assert epoch >= 0, v[p]
    assert sorted(leader for _, leader, *_ in v.values()) == [0, 1, 2], f"leaders not spread over the brokers: {v}"

    # librdkafka's view of the same Metadata.
    md = admin(bootstrap(brokers)).list_topics(topic, timeout=10).topics[topic]
    seen = {p: (m.leader, tuple(m.replicas), tuple(sorted(m.isrs))) for p, m in md.partitions.items()}
    assert seen == {p: (leader, r, isr) for p, (_, leader, _, r, isr) in v.items()}
    assert topic_config(bootstrap(brokers), topic)["min.insync.replicas"] == "2"

    # More replicas than brokers is refused, and no topic is left behind.
    bad = unique("rf4")
    with pytest.raises(KafkaException) as e:
        create(brokers, bad, 1, min_isr=1, rf=4)
    assert e.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR, e.value
    assert bad not in admin(bootstrap(brokers)).list_topics(timeout=10).topics


@pytest.mark.timeout(400)
def test_acks_all_survives_leader_kill_9(broker_factory):
    brokers = cluster(broker_factory)
    topic = unique("failover")
    create(brokers, topic, 3, min_isr=2)
    before = wait_until(lambda: settled(brokers, topic, 3, 3), timeout=30, what="a fully replicated topic")
    _, leader0, epoch0, *_ = before[0]
    victim = brokers[leader0]
    survivors = [b for b in brokers if b is not victim]

    n = 3000
    records = [(f"k{i % 97}".encode(), f"v{i:05d}".encode()) for i in range(n)]
    p = acks_all(brokers)
    state = {}

    def moved():
        """Partition 0 led by a survivor in a higher leader epoch, on every survivor."""
        v = agreed(survivors, topic)
        return bool(v) and 0 in v and v[0][0] == 0 and v[0][1] not in (leader0, -1) and v[0][2] > epoch0

    def acked_so_far(reports):
        p.poll(0.05)
        return sum(1 for r in reports if r is not None and r[0] is None)

    def each(i, reports):
        if i == n // 3:  # kill -9 the leader of partition 0 with records in flight
            wait_until(lambda: acked_so_far(reports) >= n // 4, timeout=60, what="a quarter acknowledged")
            victim.kill9()
            state["killed"] = time.monotonic()
        elif i > n // 3:
            time.sleep(0.003)  # keep producing through the failover
            if "moved" not in state and i % 25 == 0 and moved():
                state["moved"] = time.monotonic()

    results = send(p, topic, records, each=each)
    if "moved" not in state:
        wait_until(moved, timeout=30, what="a new leader for partition 0 in a higher epoch")
        state["moved"] = time.monotonic()
    took = state["moved"] - state["killed"]
    assert took < SESSION_MS / 1000 + 12, f"partition 0 had no new leader for {took:.1f} s"

    failed = errors(results)
    assert not failed, f"{len(failed)} records failed with 2 of 3 replicas up and min.insync.replicas=2: {failed[:3]}"
    acked = acked_of(results)
    by_key = {}
    for part, _, k, _ in acked:
        by_key.setdefault(k, set()).add(part)
    assert all(len(s) == 1 for s in by_key.values()), "a key went to two partitions"

    # The fenced broker leaves every ISR; the log holds every acknowledged record where it was acknowledged.
    wait_until(lambda: settled(survivors, topic, 3, 2), timeout=30, what="the dead broker out of every ISR")
    produced = {v for _, v in records}
    log = read_log(survivors, topic, 3)
    assert_acked_in_log(log, acked, produced)

    # The killed broker restarts, truncates what was never committed, catches up and rejoins every ISR.
    victim.start()
    full = wait_until(lambda: settled(brokers, topic, 3, 3), timeout=SETTLE_S, what="the restarted broker in every ISR")
    assert read_log(brokers, topic, 3) == log

    # Its copy is as good as the others': kill the current leader of partition 0 as well.
    _, leader1, epoch1, *_ = full[0]
    second = brokers[leader1]
    second.kill9()
    rest = [b for b in brokers if b is not second]
    after = wait_until(lambda: settled(rest, topic, 3, 2), timeout=30, what="every partition led by the other two")
    assert after[0][2] > epoch1, f"partition 0 changed leader without a new epoch: {full[0]} -> {after[0]}"
    assert read_log(rest, topic, 3) == log


@pytest.mark.timeout(400)
def test_follower_death_keeps_acks_all_and_short_isr_gives_not_enough_replicas(broker_factory):
    brokers = cluster(broker_factory)
    keep, strict = unique("keep"), unique("strict")
    create(brokers, keep, 1, min_isr=2)
    create(brokers, strict, 1, min_isr=3)
    views = [wait_until(lambda t=t: settled(brokers, t, 1, 3), timeout=30, what=f"{t} replicated") for t in (keep, strict)]
    leaders = {v[0][1] for v in views}
    victim = next(b for b in brokers if b.node_id not in leaders)  # a follower of both
    survivors = [b for b in brokers if b is not victim]

    acked = {keep: [], strict: []}
    produced = {keep: set(), strict: set()}
    refused = set()  # values refused with NOT_ENOUGH_REPLICAS: never appended

    def batch(prod, topic, tag, n):
        recs = [(f"{tag}-{i % 7}".encode(), f"{tag}-{i:04d}".encode()) for i in range(n)]
        produced[topic].update(v for _, v in recs)
        res = send(prod, topic, recs, partition=0)
        acked[topic] += acked_of(res)
        refused.update(v for _, v, e, _, _ in res if e is not None and e.code() == KafkaError.NOT_ENOUGH_REPLICAS)
        return res

    p = acks_all(brokers)
    for t in (keep, strict):
        assert not errors(batch(p, t, "all-up", 200))

    # One follower dies: acks=all waits until it is fenced and out of the ISR, then succeeds.
    victim.kill9()
    failed = errors(batch(p, keep, "one-dead", 200))
    assert not failed, f"acks=all failed with 2 in-sync replicas and min.insync.replicas=2: {failed[:3]}"
    for t in (keep, strict):
        wait_until(lambda t=t: settled(survivors, t, 1, 2), timeout=30, what=f"{t}: the dead follower out of the ISR")

    # ISR 2 < min.insync.replicas 3: the broker's refusal reaches the
    # application directly (retries=0; librdkafka retries NOT_ENOUGH_REPLICAS
    # otherwise, until message.timeout.ms turns it into _MSG_TIMED_OUT).
    pz = acks_all(brokers, retries=0, message_timeout_ms=10000)

    def refusal():
        (err,) = errors(batch(pz, strict, f"probe{time.monotonic_ns()}", 1)) or (None,)
        return None if err is None else [err]

    (err,) = wait_until(refusal, timeout=10, interval=0.2, what="acks=all refused on the short ISR")
    assert err.code() in NER, f"expected NOT_ENOUGH_REPLICAS, got {err.name()}: {err.str()}"
    errs = errors(batch(pz, strict, "short", 20))
    assert len(errs) == 20 and all(e.code() in NER for e in errs), [e.name() for e in errs]
    # acks=1 does not wait for the ISR; min.insync.replicas=2 topics still take acks=all.
    p1 = producer(bootstrap(brokers), acks=1, enable_idempotence=False)
    assert not errors(batch(p1, strict, "acks1", 50))
    assert not errors(batch(p, keep, "still", 50))

    # The follower returns: ISR full again, acks=all on the strict topic works again.
    victim.start()
    for t in (keep, strict):
        wait_until(lambda t=t: settled(brokers, t, 1, 3), timeout=SETTLE_S, what=f"{t}: ISR full again")
    assert not errors(batch(p, strict, "healed", 50))

    for t in (keep, strict):
        log = read_log(brokers, t, 1)
        assert_acked_in_log(log, acked[t], produced[t])
        appended = refused & {r.value for r in log[0]}
        assert not appended, f"{t}: records refused with NOT_ENOUGH_REPLICAS are in the log: {sorted(appended)[:5]}"


@pytest.mark.timeout(400)
def test_restart_all_brokers_keeps_everything(broker_factory):
    brokers = cluster(broker_factory)
    topic = unique("restart")
    create(brokers, topic, 3, min_isr=2)
    before = wait_until(lambda: settled(brokers, topic, 3, 3), timeout=30, what="a fully replicated topic")
    records = [(f"k{i % 31}".encode(), f"v{i:05d}".encode()) for i in range(1500)]
    results = send(acks_all(brokers), topic, records)
    assert not errors(results), errors(results)[:3]
    acked = acked_of(results)

    for b in brokers:
        b.kill9()
    for b in brokers:
        b.start()
    after = wait_until(lambda: settled(brokers, topic, 3, 3), timeout=60, what="every partition led and in sync again")
    for p in after:
        assert after[p][2] > before[p][2], f"partition {p}: a leader after a restart needs a new epoch: {before[p]} -> {after[p]}"

    log = read_log(brokers, topic, 3)
    assert_acked_in_log(log, acked, {v for _, v in records})
    assert sum(map(len, log.values())) == len(records), "no fault while producing, so no duplicates either"

    # Appends carry on at each partition's end.
    p = acks_all(brokers)
    for part, recs in log.items():
        more = [(b"more", f"more-{part}-{i}".encode()) for i in range(20)]
        res = send(p, topic, more, partition=part)
        assert [(e, o) for _, _, e, _, o in res] == [(None, len(recs) + i) for i in range(20)], res[:3]


def metric(b, name, topic, partition):
    status, body = b.http_get("/metrics")
    assert status == 200
    key = f'{name}{{topic="{topic}",partition="{partition}"}} '
    text = body.decode() if isinstance(body, bytes) else body
    for line in text.splitlines():
        if line.startswith(key):
            return int(float(line.split()[-1]))
    return None


@pytest.mark.timeout(400)
def test_delete_records_moves_every_replicas_log_start(broker_factory):
    """DeleteRecords goes to the leader; followers follow its log start
    from their fetch responses (Kafka's maybeIncrementLogStartOffset), so a
    new leader after a failover starts where the old one did."""
    from confluent_kafka import TopicPartition

    brokers = cluster(broker_factory)
    topic = unique("trim")
    create(brokers, topic, 1, min_isr=2)
    v = wait_until(lambda: settled(brokers, topic, 1, 3), timeout=30, what="a replicated partition")
    leader = v[0][1]
    results = send(acks_all(brokers), topic, [(b"k", f"v{i:03d}".encode()) for i in range(100)], partition=0)
    assert not errors(results)
    # Through a broker that does not lead the partition.
    other = next(b for b in brokers if b.node_id != leader)
    a = admin(other.bootstrap)
    fs = a.delete_records([TopicPartition(topic, 0, 60)], request_timeout=15)
    for f in fs.values():
        assert f.result().low_watermark == 60
    # A DeleteRecords past the high watermark is refused.
    fs = a.delete_records([TopicPartition(topic, 0, 1000)], request_timeout=15)
    for f in fs.values():
        with pytest.raises(KafkaException) as e:
            f.result()
        assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    wait_until(
        lambda: all(metric(b, "spindle_partition_log_start_offset", topic, 0) == 60 for b in brokers),
        timeout=30,
        what="every replica's log start at 60",
    )
    # Fail the leader over: the new leader's log starts at 60 too, and
    # holds the records from there.
    brokers[leader].kill9()
    rest = [b for b in brokers if b.node_id != leader]
    wait_until(lambda: settled(rest, topic, 1, 2), timeout=30, what="a new leader")
    log = consume(bootstrap(rest), topic, 1, start=60, timeout=60)[0]
    assert [r.offset for r in log] == list(range(60, 100)), [r.offset for r in log][:5]
    assert [r.value for r in log] == [f"v{i:03d}".encode() for i in range(60, 100)]


def spindle_cli(*args):
    import subprocess

    from spindle_broker import SPINDLE

    out = subprocess.run([str(SPINDLE), *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.timeout(300)
def test_cluster_status_topics_describe_and_replication_metrics(broker_factory):
    brokers = cluster(broker_factory)
    topic = unique("ops")
    create(brokers, topic, 1, min_isr=2)
    v = wait_until(lambda: settled(brokers, topic, 1, 3), timeout=30, what="a replicated partition")
    _, leader, epoch, replicas, isr = v[0]
    send(acks_all(brokers), topic, [(b"k", b"v")] * 10, partition=0)
    admin_of = lambda b: f"127.0.0.1:{b.admin_port}"  # noqa: E731

    status = spindle_cli("cluster", "status", "--admin", admin_of(brokers[0]))
    rows = {line.split()[0]: line.split() for line in status.splitlines() if line[:1].isdigit()}
    assert set(rows) == {"0", "1", "2"} and all(r[3] == "live" for r in rows.values()), status
    assert "under-replicated partitions: 0, offline partitions: 0" in status, status

    described = spindle_cli("topics", "describe", topic, "--admin", admin_of(brokers[1]))
    (row,) = [line.split() for line in described.splitlines() if line.startswith(topic)]
    assert row[:6] == [topic, "0", str(leader), str(epoch), ",".join(map(str, replicas)), ",".join(map(str, replicas))]

    lb = brokers[leader]
    wait_until(
        lambda: metric(lb, "spindle_partition_isr_size", topic, 0) == 3
        and all(
            f'spindle_follower_lag_offsets{{topic="{topic}",partition="0",follower="{f}"}} 0' in lb.http_get("/metrics")[1]
            for f in replicas
            if f != leader
        ),
        timeout=20,
        what="ISR size 3 and caught-up followers in the leader's metrics",
    )
    assert lb.metrics()["spindle_under_replicated_partitions"] == 0

    # A follower dies: once fenced it leaves the ISR; the leader reports an
    # under-replicated partition and the CLI an offline replica.
    victim = brokers[next(f for f in replicas if f != leader)]
    victim.kill9()
    wait_until(lambda: metric(lb, "spindle_partition_isr_size", topic, 0) == 2, timeout=30, what="the ISR shrunk")
    # (It also leads __consumer_offsets partitions the victim replicated.)
    assert lb.metrics()["spindle_under_replicated_partitions"] >= 1
    status = spindle_cli("cluster", "status", "--admin", admin_of(lb))
    assert "fenced" in status and "under-replicated partitions: " in status
    assert not status.strip().endswith("under-replicated partitions: 0, offline partitions: 0"), status
    described = spindle_cli("topics", "describe", topic, "--admin", admin_of(lb))
    (row,) = [line.split() for line in described.splitlines() if line.startswith(topic)]
    assert row[6] == str(victim.node_id) and str(victim.node_id) not in row[5].split(","), described


@pytest.mark.timeout(300)
def test_a_follower_behind_the_leaders_log_start_restarts_its_log_there(broker_factory):
    """A follower comes back after the leader's log start moved past its
    end (DeleteRecords while it was down): it finds its fetch offset out of
    range, restarts its log at the leader's log start (Kafka's
    truncateFullyAndStartAt) and rejoins the ISR."""
    from confluent_kafka import TopicPartition

    brokers = cluster(broker_factory)
    topic = unique("behind")
    create(brokers, topic, 1, min_isr=2)
    v = wait_until(lambda: settled(brokers, topic, 1, 3), timeout=30, what="a replicated partition")
    leader = v[0][1]
    assert not errors(send(acks_all(brokers), topic, [(b"k", f"a{i:03d}".encode()) for i in range(20)], partition=0))
    victim = next(b for b in brokers if b.node_id != leader)
    wait_until(lambda: metric(victim, "spindle_partition_log_end_offset", topic, 0) == 20, what="the follower has 20")
    victim.kill9()
    rest = [b for b in brokers if b is not victim]
    wait_until(lambda: settled(rest, topic, 1, 2), timeout=30, what="the dead follower out of the ISR")
    assert not errors(send(acks_all(rest), topic, [(b"k", f"b{i:03d}".encode()) for i in range(100)], partition=0))
    a = admin(bootstrap(rest))
    for f in a.delete_records([TopicPartition(topic, 0, 110)], request_timeout=15).values():
        assert f.result().low_watermark == 110

    victim.start()
    wait_until(lambda: settled(brokers, topic, 1, 3), timeout=45, what="the follower back in the ISR")
    assert metric(victim, "spindle_partition_log_start_offset", topic, 0) == 110
    assert metric(victim, "spindle_partition_log_end_offset", topic, 0) == 120
    # It replicates on from there.
    assert not errors(send(acks_all(brokers), topic, [(b"k", f"c{i:03d}".encode()) for i in range(5)], partition=0))
    wait_until(lambda: metric(victim, "spindle_partition_log_end_offset", topic, 0) == 125, what="new records replicated")
    log = consume(bootstrap(brokers), topic, 1, start=110, timeout=60)[0]
    assert [r.value for r in log] == [f"b{i:03d}".encode() for i in range(90, 100)] + [f"c{i:03d}".encode() for i in range(5)]


@pytest.mark.timeout(400)
def test_observers_replicate_and_two_dead_replicas_give_not_enough_replicas(broker_factory):
    """Brokers that are not voters (3 and 4) follow the metadata log,
    register, and replicate. A partition on replicas [3, 4, 0] with
    min.insync.replicas=2 loses two of them (observer 4 and voter 0; the
    quorum keeps 1 and 2): acks=all is refused with NOT_ENOUGH_REPLICAS,
    acks=1 still works, and after both return everything acknowledged is
    there."""
    brokers = cluster(broker_factory, observers=2)
    observer = brokers[3]
    view = json.loads(observer.http_get("/v1/cluster")[1])
    assert view["quorum"]["role"] == "follower" and view["controller_active"] is False
    assert view["quorum"]["leader"] in (0, 1, 2)

    def described():
        # DescribeCluster through an observer: every broker, and a
        # controller the client can reach.
        a = admin(observer.bootstrap)  # must outlive the future
        c = a.describe_cluster(request_timeout=10).result(timeout=20)
        return c if sorted(n.id for n in c.nodes) == [0, 1, 2, 3, 4] else None

    c = wait_until(described, timeout=SETTLE_S, what="DescribeCluster naming all five brokers")
    assert c.controller.id in (0, 1, 2), c.controller
    assert {n.id: n.port for n in c.nodes} == {b.node_id: b.port for b in brokers}
    topic = unique("obs")
    a = admin(bootstrap(brokers))

    def created():
        # Five brokers on two cores: librdkafka's admin client sometimes
        # times out finding the controller; ask again (a repeat of a
        # request that did land answers TOPIC_ALREADY_EXISTS).
        fs = a.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=-1, replica_assignment=[[3, 4, 0]],
                      config={"min.insync.replicas": "2"})],
            operation_timeout=30, request_timeout=30,
        )
        try:
            fs[topic].result(timeout=40)
        except KafkaException as e:
            if e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return True
            if e.args[0].code() != KafkaError._TIMED_OUT:
                raise
            return False
        return True

    wait_until(created, timeout=120, interval=1, what="the topic created")
    v = wait_until(lambda: settled(brokers, topic, 1, 3), timeout=SETTLE_S, what="a partition on 3, 4, 0 in sync")
    assert v[0][1] == 3 and v[0][3] == (3, 4, 0), v
    first = send(acks_all(brokers), topic, [(b"k", f"a{i:03d}".encode()) for i in range(50)], partition=0)
    assert not errors(first)
    wait_until(lambda: metric(brokers[4], "spindle_partition_log_end_offset", topic, 0) == 50, timeout=SETTLE_S,
               what="observer 4 has it")

    for b in (brokers[4], brokers[0]):
        b.kill9()
    rest = live(brokers)
    wait_until(lambda: settled(rest, topic, 1, 1), timeout=SETTLE_S, what="the ISR down to the leader")
    strict = acks_all(rest, retries=0, message_timeout_ms=10000)
    refused = send(strict, topic, [(b"k", b"refused")], partition=0)
    assert [e.code() for e in errors(refused)] == [KafkaError.NOT_ENOUGH_REPLICAS], [e.name() for e in errors(refused)]
    one = send(producer(bootstrap(rest), acks="1"), topic, [(b"k", f"b{i:03d}".encode()) for i in range(10)],
               partition=0)
    assert not errors(one)

    for b in (brokers[4], brokers[0]):
        b.start()
    wait_until(lambda: settled(brokers, topic, 1, 3), timeout=SETTLE_S, what="both back in the ISR")
    log = consume(bootstrap(brokers), topic, 1, timeout=60)[0]
    values = [r.value for r in log]
    assert values == [f"a{i:03d}".encode() for i in range(50)] + [f"b{i:03d}".encode() for i in range(10)], values[:5]


def test_spindle_bench_sends_each_partition_to_its_leader(broker_factory, tmp_path):
    # The bundled load generator against a cluster, bootstrapped from one
    # broker: partitions led by the other two must get their produce and
    # fetch requests there (as any Kafka client does), or every batch for
    # them would come back NOT_LEADER_OR_FOLLOWER and count as an error.
    from test_spindle_bench import BENCH, log_end

    brokers = cluster(broker_factory)
    topic = unique("bench")
    create(brokers, topic, 6, min_isr=2)
    v = wait_until(lambda: settled(brokers, topic, 6, 3), timeout=SETTLE_S, what="six settled partitions")
    assert len({leader for _, leader, *_ in v.values()}) == 3, f"leaders not spread: {v}"
    out = tmp_path / "out"
    r = subprocess.run(
        [str(BENCH), "e2e", "--bootstrap", brokers[0].bootstrap, "--topic", topic, "--partitions", "6",
         "--rate", "3000", "--duration", "4s", "--warmup", "1s", "--consumers", "2", "--acks", "all",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["produced"]["errors"] == 0 and s["consumed"]["errors"] == 0, (s, r.stderr[-2000:])
    assert s["produced"]["records"] > 9000, s
    assert s["consumed"]["records"] == s["produced"]["records"], s
    assert log_end(bootstrap(brokers), topic, 6) == s["produced"]["records"]


def test_every_connection_between_brokers_is_served(broker_factory):
    # Regression: each core's accept loop dropped its pending accept every
    # 100 ms to look for a stop, and an io_uring ACCEPT that had already
    # taken a connection from the kernel was lost with it: the peer was
    # connected and nobody answered. A new cluster's replica fetchers
    # connect while every broker is busy, and in most runs one of them
    # waited out its 10 s request timeout (acknowledgements with it).
    started = time.monotonic()
    brokers = cluster(broker_factory)
    topic = unique("conn")
    create(brokers, topic, 6, min_isr=2)
    wait_until(lambda: settled(brokers, topic, 6, 3), timeout=SETTLE_S, what="six settled partitions")
    time.sleep(max(0.0, started + 14 - time.monotonic()))
    lost = {b.node_id: [l for l in b.log_text().splitlines() if "no answer within" in l] for b in brokers}
    assert not any(lost.values()), lost
