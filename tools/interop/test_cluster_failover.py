"""Failover of the things around a partition's log, on three `spindle serve`
processes in cluster mode (the cluster() of test_cluster_replication).

Proved: a consumer group outlives its coordinator (the broker leading the
group's __consumer_offsets partition is killed with -9 mid-consumption; the
new coordinator restores the member, which carries on without a rebalance,
no committed offset is lost or rewound, and a new member resumes exactly at
the committed offsets); topic administration (CreateTopics, CreatePartitions,
IncrementalAlterConfigs, DeleteTopics) sent to one broker that is not the
active controller takes effect on every broker, and a deleted topic created
again is new and empty; a leader frozen with SIGSTOP while a producer's
acks=all requests sit in its socket acknowledges nothing that the new
leader's log does not hold at the acknowledged offset, and rejoins as a
follower with a log identical to the leader's.
"""

import json
import os
import signal
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic, ResourceType

from helpers import admin, consume, topic_config, unique, wait_until
from test_cluster_replication import (
    acked_of,
    acks_all,
    agreed,
    assert_acked_in_log,
    bootstrap,
    cluster,
    create,
    errors,
    partitions,
    read_log,
    send,
    settled,
)

OFFSETS = "__consumer_offsets"
DELAY = ("--group-initial-rebalance-delay-ms", "300")


def group_consumer(bootstrap_servers, group):
    return Consumer({
        "bootstrap.servers": bootstrap_servers,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "socket.timeout.ms": 5000,
        "fetch.wait.max.ms": 100,
    })


def commit_sync(c, offsets, on_messages, timeout=30):
    """Synchronous commit of {(topic, partition): offset}, retried while the
    coordinator moves. Between tries the consumer is polled (into
    on_messages), as an application would: while no coordinator is known
    the client may also time its session out and rejoin."""
    tps = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
    seen, deadline = [], time.monotonic() + timeout
    while True:
        try:
            done = c.commit(offsets=tps, asynchronous=False)
            bad = [tp for tp in done if tp.error is not None]
            if not bad:
                return seen
            seen.append(bad[0].error)
        except KafkaException as e:
            seen.append(e.args[0])
        assert time.monotonic() < deadline, f"commit failed for {timeout} s: {seen[-3:]}"
        on_messages(c.consume(num_messages=50, timeout=0.5))


@pytest.mark.timeout(400)
def test_group_survives_coordinator_failover(broker_factory):
    brokers = cluster(lambda *a: broker_factory(*a, *DELAY))
    wait_until(lambda: settled(brokers, OFFSETS, 50, 3), timeout=60, what="__consumer_offsets created, RF 3")
    topic, group = unique("gfail"), unique("group")
    create(brokers, topic, 3, min_isr=2)
    wait_until(lambda: settled(brokers, topic, 3, 3), timeout=30, what="a fully replicated topic")
    n = 900
    res = send(acks_all(brokers), topic, [(f"k{i % 13}".encode(), f"v{i:04d}".encode()) for i in range(n)])
    assert not errors(res), errors(res)[:3]
    ends = {p: 0 for p in range(3)}
    for _, _, _, p, o in res:
        ends[p] = max(ends[p], o + 1)
    assert sum(ends.values()) == n

    c = group_consumer(bootstrap(brokers), group)
    rebalances = []  # the member's partitions taken away, and why
    c.subscribe(
        [topic],
        on_revoke=lambda _c, ps: rebalances.append(("revoked", sorted(tp.partition for tp in ps))),
        on_lost=lambda _c, ps: rebalances.append(("lost", sorted(tp.partition for tp in ps))),
    )
    got = {}  # (partition, offset) -> value
    nxt = {}  # (topic, partition) -> next offset to commit
    floor = {}  # committed before the kill: never redelivered after it

    def take(msgs):
        for m in msgs:
            if m.error():
                assert m.error().code() != KafkaError._PARTITION_EOF, m.error()
                continue  # transient (coordinator or leader moving)
            low = floor.get((topic, m.partition()), 0)
            assert m.offset() >= low, f"partition {m.partition()} offset {m.offset()} redelivered below its commit {low}"
            got[(m.partition(), m.offset())] = m.value()
            nxt[(topic, m.partition())] = max(nxt.get((topic, m.partition()), 0), m.offset() + 1)

    def pump(until_count, timeout):
        deadline = time.monotonic() + timeout
        while len(got) < until_count:
            assert time.monotonic() < deadline, f"only {len(got)} of {until_count} records after {timeout} s"
            take(c.consume(num_messages=50, timeout=0.5))

    pump(n // 2, timeout=90)
    commit_sync(c, nxt, take)
    floor.update(nxt)

    a = admin(bootstrap(brokers))
    desc = a.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=20)
    victim = next(b for b in brokers if b.node_id == desc.coordinator.id)
    # The coordinator is the leader of the group's __consumer_offsets partition.
    leaders = {leader for _, leader, *_ in agreed(brokers, OFFSETS).values()}
    assert desc.coordinator.id in leaders
    before_kill = list(rebalances)
    victim.kill9()
    survivors = [b for b in brokers if b is not victim]

    pump(n, timeout=120)
    assert sorted(got) == sorted((p, o) for _, _, _, p, o in res)
    assert {(p, o): v for _, v, _, p, o in res} == got
    commit_sync(c, nxt, take, timeout=30)
    assert {p: nxt[(topic, p)] for p in range(3)} == ends
    # The new coordinator restored the member from the group's record: its
    # heartbeats went on at its generation, nothing was revoked or lost.
    assert rebalances == before_kill, rebalances[len(before_kill):]
    c.close()

    # The new coordinator answers through a survivor, with the committed offsets.
    sa = admin(survivors[0].bootstrap)
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(3)])
    listed = sa.list_consumer_group_offsets([req], request_timeout=15)[group].result(timeout=30)
    assert {tp.partition: tp.offset for tp in listed.topic_partitions} == ends

    # A new member resumes at the committed offsets: it sees exactly what is produced now.
    extra = [(b"late", f"late-{i}".encode()) for i in range(30)]
    late = send(acks_all(survivors), topic, extra)
    assert not errors(late), errors(late)[:3]
    c2 = group_consumer(bootstrap(survivors), group)
    try:
        committed = c2.committed([TopicPartition(topic, p) for p in range(3)], timeout=30)
        assert {tp.partition: tp.offset for tp in committed} == ends
        c2.subscribe([topic])
        seen = {}
        deadline = time.monotonic() + 60
        while len(seen) < len(extra) and time.monotonic() < deadline:
            for m in c2.consume(num_messages=50, timeout=0.5):
                if not m.error():
                    seen[(m.partition(), m.offset())] = m.value()
        time.sleep(1)
        for m in c2.consume(num_messages=50, timeout=1):
            if not m.error():
                seen[(m.partition(), m.offset())] = m.value()
        assert seen == {(p, o): v for _, v, _, p, o in late}, f"new member got {sorted(seen)[:10]}"
        assert all(o >= ends[p] for p, o in seen)
    finally:
        c2.close()


def controller_id(b):
    return admin(b.bootstrap).list_topics(timeout=10).controller_id


@pytest.mark.timeout(400)
def test_admin_through_any_broker(broker_factory):
    brokers = cluster(broker_factory)
    def quorum_leader():
        return json.loads(brokers[0].http_get("/v1/cluster")[1])["quorum"]["leader"]

    (ctrl,) = wait_until(lambda: (q := quorum_leader()) is not None and q >= 0 and controller_id(brokers[0]) == q
                         and (q,), timeout=30, what="an active controller named in Metadata")
    via = next(b for b in brokers if b.node_id != ctrl)
    wait_until(lambda: controller_id(via) == ctrl, timeout=10, what="every broker naming the controller")
    a = admin(via.bootstrap)  # only this broker
    topic = unique("anyb")
    fs = a.create_topics([NewTopic(topic, num_partitions=2, replication_factor=3, config={"min.insync.replicas": "2"})],
                         operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=40)
    wait_until(lambda: settled(brokers, topic, 2, 3), timeout=30, what="the topic on every broker")

    a.create_partitions([NewPartitions(topic, 4)], operation_timeout=30, request_timeout=30)[topic].result(timeout=40)
    v = wait_until(lambda: settled(brokers, topic, 4, 3), timeout=30, what="four partitions on every broker")
    assert all(sorted(r) == [0, 1, 2] for _, _, _, r, _ in v.values()), v

    r = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7654321", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([r], request_timeout=30)[r].result(timeout=40)
    for b in brokers:
        wait_until(lambda b=b: topic_config(b.bootstrap, topic).get("retention.ms") == "7654321",
                   timeout=10, what=f"retention.ms on broker {b.node_id}")

    p = acks_all(brokers)
    for part in range(4):
        res = send(p, topic, [(None, f"old-{part}-{i}".encode()) for i in range(10)], partition=part)
        assert [(e, o) for *_, e, _, o in res] == [(None, i) for i in range(10)], res[:3]

    a.delete_topics([topic], operation_timeout=30, request_timeout=30)[topic].result(timeout=40)
    t0 = time.monotonic()
    for b in brokers:
        wait_until(lambda b=b: partitions(b, topic) is None, timeout=max(0.5, 10 - (time.monotonic() - t0)),
                   what=f"{topic} gone from broker {b.node_id}'s Metadata")
        assert topic not in admin(b.bootstrap).list_topics(timeout=10).topics

    fs = a.create_topics([NewTopic(topic, num_partitions=2, replication_factor=3)], operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=40)
    wait_until(lambda: settled(brokers, topic, 2, 3), timeout=30, what="the new topic on every broker")
    assert consume(bootstrap(brokers), topic, 2, timeout=60) == {0: [], 1: []}, "a re-created topic is not empty"
    for b in brokers:
        assert topic_config(b.bootstrap, topic).get("retention.ms") != "7654321", f"broker {b.node_id} kept the old config"



def log_figures(b, topic):
    """(log end offset, bytes on disk) of partition 0 as broker b reports it."""
    m = b.metrics()
    key = f'{{topic="{topic}",partition="0"}}'
    return m.get("spindle_partition_log_end_offset" + key), m.get("spindle_partition_size_bytes" + key)


@pytest.mark.timeout(400)
def test_paused_leader_acknowledges_nothing_that_is_lost(broker_factory):
    brokers = cluster(broker_factory)
    topic = unique("zombie")
    create(brokers, topic, 1, min_isr=2)
    _, leader0, epoch0, *_ = wait_until(lambda: settled(brokers, topic, 1, 3), timeout=30, what="a replicated topic")[0]
    zombie = brokers[leader0]
    survivors = [b for b in brokers if b is not zombie]

    # Its requests stay in flight through the pause (librdkafka times a
    # ProduceRequest out after socket.timeout.ms, too).
    p1 = acks_all([zombie], retries=0, message_timeout_ms=60000, request_timeout_ms=55000, socket_timeout_ms=55000)
    warm = send(p1, topic, [(b"w", f"warm-{i}".encode()) for i in range(20)], partition=0)
    assert not errors(warm), errors(warm)[:3]

    frozen = []
    try:
        os.kill(zombie.proc.pid, signal.SIGSTOP)
        frozen.append(zombie)
        stopped = time.monotonic()
        z_recs = [(b"z", f"zombie-{i}".encode()) for i in range(50)]
        z_reports = [None] * len(z_recs)
        for i, (k, val) in enumerate(z_recs):
            p1.produce(topic, key=k, value=val, partition=0,
                       on_delivery=lambda err, msg, i=i: z_reports.__setitem__(i, (err, msg.partition(), msg.offset())))
            p1.poll(0)

        def moved():
            v = agreed(survivors, topic)
            return v and v[0][0] == 0 and v[0][1] not in (leader0, -1) and v[0][2] > epoch0 and v

        wait_until(moved, timeout=30, what="a new leader among the survivors")
        # Paused past its session: fenced and out of the ISR while it still believes it leads.
        wait_until(lambda: settled(survivors, topic, 1, 2), timeout=30, what="the frozen leader out of the ISR")
        p2 = acks_all(survivors)
        p2_res = send(p2, topic, [(b"p2", f"p2-{i}".encode()) for i in range(100)], partition=0)
        assert not errors(p2_res), f"acks=all failed with 2 live replicas: {errors(p2_res)[:3]}"
        time.sleep(max(0.0, stopped + 8 - time.monotonic()))  # a long pause, well past the session
    finally:
        for b in frozen:
            os.kill(b.proc.pid, signal.SIGCONT)

    assert p1.flush(90) == 0, "P1's delivery reports missing"
    p1_res = [(k, v, *rep) for (k, v), rep in zip(z_recs, z_reports)]
    time.sleep(10)
    final = wait_until(lambda: settled(brokers, topic, 1, 3), timeout=45, what="the old leader back in the ISR")
    assert final[0][1] != leader0 or final[0][2] > epoch0, final

    produced = {r[1] for r in warm + p1_res + p2_res}
    log = read_log(brokers, topic, 1)
    delivered = acked_of(p1_res)
    assert_acked_in_log(log, acked_of(warm) + delivered + acked_of(p2_res), produced)
    # Identical copies: every broker's log end offset and bytes match the leader's log.
    figures = wait_until(lambda: (f := [log_figures(b, topic) for b in brokers]) and len(set(f)) == 1 and f,
                         timeout=30, what="the same log end offset and size on every broker")
    assert figures[0][0] == len(log[0]), (figures, len(log[0]))
    z_errs = sorted({e.name() for e in errors(p1_res)})
    print(f"P1: {len(delivered)} of {len(z_recs)} delivered, errors {z_errs}; log {len(log[0])} records")
