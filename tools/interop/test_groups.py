"""Consumer groups with real clients against a real broker: partitions
shared and moved on failure (confluent-kafka), cooperative-sticky,
kafka-python and kafkajs group consumers, durable commits across restart
and kill -9, members that keep their assignment across a broker restart,
group.max.size (a member beyond it is refused with GROUP_MAX_SIZE_REACHED by
both confluent-kafka and kafka-python, without disturbing the group),
Kafka's error codes, and the built-in lag report."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from helpers import admin, create_topic, produce_all, producer, unique, wait_until
from spindle_broker import SPINDLE

HERE = Path(__file__).resolve().parent
# A new group's first rebalance waits this long for more members (Kafka's
# default is 3 s; shorter keeps the tests quick).
DELAY = ("--group-initial-rebalance-delay-ms", "300")


class Member:
    """A group member in its own process (see group_member.py)."""

    def __init__(self, bootstrap, topic, group, name, strategy="range", instance=None):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "group_member.py"), bootstrap, topic, group, name, strategy]
            + ([instance] if instance else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.assignment = []
        self.assignments = []
        self.member_ids = []
        self.revocations = []
        self.records = []
        self.errors = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            if ev["event"] == "assigned":
                self.assignment = ev["partitions"]
                self.assignments.append(ev["partitions"])
                self.member_ids.append(ev["member_id"])
            elif ev["event"] == "revoked":
                self.revocations.append(ev)
            elif ev["event"] == "record":
                self.records.append((ev["partition"], ev["offset"], ev["value"]))
            else:
                self.errors.append(ev)

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def produce_rounds(bootstrap, topic, partitions, per_partition, tag):
    recs = [(p, f"{tag}-{p}-{i}".encode(), f"{tag}-{p}-{i}".encode(), None, None) for p in range(partitions) for i in range(per_partition)]
    return produce_all(producer(bootstrap, acks="all"), topic, recs)


def before_and_after_restart(partitions):
    """(partition, offset, value) of produce_rounds' "a" round of five per
    partition, then its "b" round, sorted."""
    return sorted((p, i, f"{t}-{p}-{i % 5}") for p in range(partitions) for i, t in enumerate(["a"] * 5 + ["b"] * 5))


def balanced(members, partitions):
    got = [set(m.assignment) for m in members]
    union = set().union(*got)
    disjoint = sum(len(g) for g in got) == len(union)
    return union == set(range(partitions)) and disjoint and all(got)


def committed(bootstrap, group, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)}
    finally:
        c.close()


def test_three_members_share_six_partitions_and_a_killed_member_s_partitions_move(broker_factory):
    b = broker_factory(*DELAY)
    topic, group = create_topic(b.bootstrap, unique("grp"), partitions=6), unique("g")
    produce_rounds(b.bootstrap, topic, 6, 30, "a")
    members = [Member(b.bootstrap, topic, group, f"m{i}") for i in range(3)]
    try:
        wait_until(lambda: balanced(members, 6), timeout=30, what="every partition assigned exactly once")
        assert all(len(m.assignment) == 2 for m in members), [m.assignment for m in members]
        seen = lambda: {(p, o) for m in members for (p, o, _) in m.records}
        wait_until(lambda: len(seen()) == 180, timeout=30, what="first 180 records consumed")
        victim, survivors = members[0], members[1:]
        moved = set(victim.assignment)
        victim.kill9()  # no LeaveGroup: only the session timeout can free its partitions
        killed_at = time.monotonic()
        produce_rounds(b.bootstrap, topic, 6, 30, "b")
        wait_until(lambda: balanced(survivors, 6), timeout=30, what="survivors own all six partitions")
        took = time.monotonic() - killed_at
        assert took >= 4, f"partitions moved after {took:.1f} s, before the 6 s session timeout could expire"
        assert moved <= set(survivors[0].assignment) | set(survivors[1].assignment)
        wait_until(lambda: len(seen()) == 360, timeout=30, what="every acknowledged record consumed")
        # At least once, nothing skipped: each (partition, offset) below the
        # log end was delivered, with the value produced there.
        values = {(p, o): v for m in members for (p, o, v) in m.records}
        for p in range(6):
            assert [values[(p, o)] for o in range(60)] == [f"a-{p}-{i}" for i in range(30)] + [f"b-{p}-{i}" for i in range(30)]
        wait_until(lambda: committed(b.bootstrap, group, topic, 6) == {p: 60 for p in range(6)}, timeout=15, what="commits at log end")
        assert not any(m.errors for m in survivors), [m.errors for m in survivors]
    finally:
        for m in members:
            m.stop()


def test_a_member_beyond_group_max_size_is_refused_and_the_group_keeps_consuming(broker_factory):
    b = broker_factory(*DELAY, "--group-max-size", "2")
    topic, group = create_topic(b.bootstrap, unique("grpmax"), partitions=4), unique("g")
    produce_rounds(b.bootstrap, topic, 4, 10, "a")
    members = [Member(b.bootstrap, topic, group, f"m{i}") for i in range(2)]
    extra = None
    try:
        wait_until(lambda: balanced(members, 4), timeout=30, what="two members sharing four partitions")
        revoked_before = [len(m.revocations) for m in members]
        extra = Member(b.bootstrap, topic, group, "m2")
        wait_until(lambda: any("GROUP_MAX_SIZE_REACHED" in e.get("error", "") for e in extra.errors), timeout=30,
                   what="the third member told the group is full")
        assert extra.assignment == [], extra.assignment
        # The two members were not rebalanced: each still owns what it had, and consumes.
        assert balanced(members, 4), [m.assignment for m in members]
        assert [len(m.revocations) for m in members] == revoked_before, [m.revocations for m in members]
        produce_rounds(b.bootstrap, topic, 4, 10, "b")
        wait_until(lambda: len({(p, o) for m in members for (p, o, _) in m.records}) == 80, timeout=30,
                   what="every record consumed by the two members")
        # One stops (SIGTERM ends its process without a LeaveGroup): once its
        # 6 s session expires, the third gets in on its next try.
        members[1].stop()
        wait_until(lambda: balanced([members[0], extra], 4), timeout=60, what="the third member in once there is room")
    finally:
        for m in members + ([extra] if extra else []):
            m.stop()


def test_kafka_python_member_beyond_group_max_size_gets_group_max_size_reached(broker_factory):
    from kafka import KafkaConsumer
    from kafka.errors import GroupMaxSizeReachedError

    b = broker_factory(*DELAY, "--group-max-size", "1")
    topic, group = create_topic(b.bootstrap, unique("grpmax1"), partitions=1), unique("g")
    first = KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=group)
    second = KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=group)
    try:
        wait_until(lambda: first.poll(100) is not None and first.assignment(), timeout=30, what="the first member assigned")
        with pytest.raises(GroupMaxSizeReachedError):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                second.poll(100)
        first.poll(100)
        assert [tp.partition for tp in first.assignment()] == [0], "the member in the group keeps its partition"
    finally:
        second.close()
        first.close()


def test_cooperative_sticky_members_rebalance_incrementally(broker_factory):
    b = broker_factory(*DELAY)
    topic, group = create_topic(b.bootstrap, unique("coop"), partitions=6), unique("g")
    produce_rounds(b.bootstrap, topic, 6, 5, "c")
    first = [Member(b.bootstrap, topic, group, f"s{i}", "cooperative-sticky") for i in range(2)]
    members = list(first)
    try:
        wait_until(lambda: balanced(first, 6), timeout=30, what="two cooperative members balanced")
        before = {m.name: set(m.assignment) for m in first}
        members.append(Member(b.bootstrap, topic, group, "s2", "cooperative-sticky"))
        wait_until(lambda: balanced(members, 6) and len(members[2].assignment) == 2, timeout=40, what="three members balanced")
        for m in first:
            # Sticky: an incumbent only gives partitions up, never swaps.
            assert set(m.assignment) <= before[m.name], (m.name, before[m.name], m.assignment)
        wait_until(lambda: len({(p, o) for m in members for (p, o, _) in m.records}) == 30, timeout=20, what="all records")
    finally:
        for m in members:
            m.stop()


def test_committed_offsets_survive_clean_restart_and_kill9(broker_factory):
    b = broker_factory()
    topic, group = create_topic(b.bootstrap, unique("commit"), partitions=3), unique("g")
    produce_rounds(b.bootstrap, topic, 3, 10, "d")
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, p, 3 + p) for p in range(3)], asynchronous=False)
    c.close()
    assert committed(b.bootstrap, group, topic, 3) == {0: 3, 1: 4, 2: 5}
    b.restart()
    assert committed(b.bootstrap, group, topic, 3) == {0: 3, 1: 4, 2: 5}
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, p, 7 + p) for p in range(3)], asynchronous=False)
    c.close()
    b.kill9()
    b.start()
    assert committed(b.bootstrap, group, topic, 3) == {0: 7, 1: 8, 2: 9}
    assert committed(b.bootstrap, unique("never"), topic, 3) == {0: -1001, 1: -1001, 2: -1001}, "unknown group: no offset, no error"


@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
def test_members_keep_their_assignment_across_a_broker_restart(broker_factory, stop):
    """As with Kafka, a restarted coordinator restores the group from its
    last stored metadata: the members' heartbeats go on, nobody's
    partitions are revoked, and consumption continues where it was."""
    b = broker_factory(*DELAY)
    topic, group = create_topic(b.bootstrap, unique("keep"), partitions=4), unique("g")
    produce_rounds(b.bootstrap, topic, 4, 5, "a")
    members = [Member(b.bootstrap, topic, group, f"m{i}") for i in range(2)]
    try:
        wait_until(
            lambda: balanced(members, 4) and sum(len(m.records) for m in members) == 20,
            timeout=60,
            what="two members sharing four partitions, every record consumed",
        )
        before = [(m.member_ids[-1], sorted(m.assignment)) for m in members]
        revoked = [len(m.revocations) for m in members]
        a = admin(b.bootstrap)  # must outlive its futures
        desc = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert sorted(m.member_id for m in desc.members) == sorted(i for i, _ in before)

        if stop == "sigterm":
            b.stop()
        else:
            b.kill9()
        b.start(keep_ports=True)
        produce_rounds(b.bootstrap, topic, 4, 5, "b")
        wait_until(
            lambda: sum(len(m.records) for m in members) == 40, timeout=60, what="the records produced after the restart"
        )
        # Heartbeats every 0.5 s: a member the broker did not know would
        # have been told to rejoin by now.
        time.sleep(3)
        assert [len(m.revocations) for m in members] == revoked, [m.revocations for m in members]
        assert [(m.member_ids[-1], sorted(m.assignment)) for m in members] == before
        assert all(not m.errors for m in members), [m.errors for m in members]
        got = sorted(r for m in members for r in m.records)
        assert got == before_and_after_restart(4)
        a = admin(b.bootstrap)  # must outlive its futures
        desc = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert str(desc.state).endswith("STABLE"), desc.state
        assert sorted(m.member_id for m in desc.members) == sorted(i for i, _ in before)
    finally:
        for m in members:
            m.stop()


def test_a_static_member_that_restarts_gets_its_partitions_back_without_a_rebalance(broker_factory):
    """Static membership (KIP-345, group.instance.id): a member that comes
    back within its session under the same instance id takes over its old
    assignment at the same generation. The other member is not disturbed."""
    b = broker_factory(*DELAY)
    topic, group = create_topic(b.bootstrap, unique("static"), partitions=4), unique("g")
    produce_rounds(b.bootstrap, topic, 4, 5, "a")
    members = [Member(b.bootstrap, topic, group, f"m{i}", instance=f"i{i}") for i in range(2)]
    try:
        wait_until(
            lambda: balanced(members, 4) and sum(len(m.records) for m in members) == 20,
            timeout=60,
            what="two static members sharing four partitions, every record consumed",
        )
        first, other = members
        first_before = (first.member_ids[-1], sorted(first.assignment))
        other_before = (other.member_ids[-1], sorted(other.assignment))
        other_revoked = len(other.revocations)
        first.kill9()
        again = Member(b.bootstrap, topic, group, "m0-again", instance="i0")
        members.append(again)
        wait_until(lambda: sorted(again.assignment) == first_before[1], timeout=30, what="the old partitions back")
        produce_rounds(b.bootstrap, topic, 4, 5, "b")
        wait_until(
            lambda: len({(p, o) for m in members for (p, o, _) in m.records}) == 40,
            timeout=60,
            what="the records produced after the restart",
        )
        time.sleep(2)  # heartbeats every 0.5 s: a rebalance would show by now
        assert len(other.revocations) == other_revoked, other.revocations
        assert (other.member_ids[-1], sorted(other.assignment)) == other_before
        assert not again.revocations, again.revocations
        assert again.member_ids[-1] != first_before[0], "a new incarnation gets a new member id"
        assert not other.errors and not again.errors, (other.errors, again.errors)
        a = admin(b.bootstrap)  # must outlive its futures
        desc = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert str(desc.state).endswith("STABLE"), desc.state
        got = sorted((m.group_instance_id, m.member_id) for m in desc.members)
        assert got == [("i0", again.member_ids[-1]), ("i1", other_before[0])]
    finally:
        for m in members:
            m.stop()


def test_two_static_members_with_one_instance_id_the_older_is_fenced(broker_factory):
    """The older of two consumers sharing a group.instance.id is fenced
    (FENCED_INSTANCE_ID, fatal in librdkafka) instead of both taking turns
    in the group."""
    b = broker_factory(*DELAY)
    topic, group = create_topic(b.bootstrap, unique("fence"), partitions=2), unique("g")
    old = Member(b.bootstrap, topic, group, "old", instance="same")
    members = [old]
    try:
        wait_until(lambda: sorted(old.assignment) == [0, 1], timeout=30, what="the first consumer assigned")
        new = Member(b.bootstrap, topic, group, "new", instance="same")
        members.append(new)
        wait_until(lambda: sorted(new.assignment) == [0, 1], timeout=30, what="the second consumer assigned")
        fenced = lambda: [e for e in old.errors if "fenced" in e.get("error", "").lower()]
        wait_until(lambda: fenced(), timeout=15, what="the first consumer fenced")
        time.sleep(3)
        assert len(new.member_ids) == 1 and not new.revocations, (new.member_ids, new.revocations)
        assert not new.errors, new.errors
        a = admin(b.bootstrap)  # must outlive its futures
        desc = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert [(m.group_instance_id, m.member_id) for m in desc.members] == [("same", new.member_ids[-1])]
    finally:
        for m in members:
            m.stop()


def test_a_kafka_python_static_member_that_restarts_gets_its_partitions_back(broker_factory):
    """kafka-python with group_instance_id (JoinGroup v7: the answer names
    the old leader, so a restarting leader assigns nothing), beside a
    static librdkafka member that must not notice the restart."""
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor

    b = broker_factory(*DELAY)
    topic, group = create_topic(b.bootstrap, unique("kpstatic"), partitions=4), unique("g")

    def static_consumer():
        kc = KafkaConsumer(
            bootstrap_servers=b.bootstrap,
            group_id=group,
            group_instance_id="kp",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            partition_assignment_strategy=[RangePartitionAssignor],
        )
        kc.subscribe([topic])
        return kc

    def poll_until(kc, done, timeout, what):
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
            kc.poll(timeout_ms=200)

    kc = static_consumer()
    other = Member(b.bootstrap, topic, group, "other", instance="cf")
    try:
        mine = lambda: sorted(tp.partition for tp in kc.assignment())
        poll_until(kc, lambda: len(mine()) == 2 and len(other.assignment) == 2, 60, "two members, two partitions each")
        before, other_before, other_revoked = mine(), sorted(other.assignment), len(other.revocations)
        kc.close()  # a static member sends no LeaveGroup
        kc = static_consumer()
        poll_until(kc, lambda: mine() == before, 30, "the old partitions back")
        end = time.monotonic() + 3
        while time.monotonic() < end:
            kc.poll(timeout_ms=200)
        assert mine() == before
        assert (sorted(other.assignment), len(other.revocations)) == (other_before, other_revoked), other.revocations
        a = admin(b.bootstrap)  # must outlive its futures
        desc = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert str(desc.state).endswith("STABLE"), desc.state
        assert sorted(m.group_instance_id for m in desc.members) == ["cf", "kp"]
    finally:
        kc.close()
        other.stop()


def test_a_kafka_python_member_keeps_its_assignment_across_a_broker_restart(broker_factory):
    from kafka import ConsumerRebalanceListener, KafkaConsumer

    class Listener(ConsumerRebalanceListener):
        def __init__(self):
            self.revoked, self.assigned = [], []

        def on_partitions_revoked(self, revoked):
            self.revoked.append(sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            self.assigned.append(sorted(tp.partition for tp in assigned))

    b = broker_factory(*DELAY)
    topic, group = create_topic(b.bootstrap, unique("kpkeep"), partitions=2), unique("g")
    produce_rounds(b.bootstrap, topic, 2, 5, "a")
    kc = KafkaConsumer(
        bootstrap_servers=b.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        reconnect_backoff_max_ms=500,
    )
    listener = Listener()
    kc.subscribe([topic], listener=listener)
    got = []

    def consume_until(n, timeout):
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            for recs in kc.poll(timeout_ms=200).values():
                got.extend((r.partition, r.offset, r.value.decode()) for r in recs)
        assert len(got) >= n, f"{len(got)} of {n} records"
        kc.commit()

    try:
        consume_until(10, 60)
        assert listener.assigned == [[0, 1]] and listener.revoked == [[]], (listener.assigned, listener.revoked)
        a = admin(b.bootstrap)  # must outlive its futures
        before = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        b.stop()
        b.start(keep_ports=True)
        produce_rounds(b.bootstrap, topic, 2, 5, "b")
        consume_until(20, 60)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            kc.poll(timeout_ms=200)
        assert listener.assigned == [[0, 1]] and listener.revoked == [[]], (listener.assigned, listener.revoked)
        assert sorted(got) == before_and_after_restart(2)
        a = admin(b.bootstrap)
        after = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert [m.member_id for m in after.members] == [m.member_id for m in before.members]
    finally:
        kc.close()


def test_a_kafkajs_member_keeps_its_membership_across_a_broker_restart(broker_factory):
    b = broker_factory(*DELAY)
    topic, group = create_topic(b.bootstrap, unique("jskeep"), partitions=2), unique("g")
    produce_rounds(b.bootstrap, topic, 2, 5, "a")
    proc = subprocess.Popen(
        ["node", str(HERE / "js" / "group_member.js"), b.bootstrap, topic, group],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(b.root / "kafkajs.log", "w"),
        text=True,
        cwd=HERE / "js",
    )
    events = []
    threading.Thread(target=lambda: events.extend(json.loads(line) for line in proc.stdout), daemon=True).start()

    def of(kind):
        return [e for e in list(events) if e["event"] == kind]

    try:
        wait_until(lambda: len(of("record")) == 10, timeout=60, what="the first ten records")
        b.stop()
        b.start(keep_ports=True)
        produce_rounds(b.bootstrap, topic, 2, 5, "b")
        try:
            wait_until(lambda: len(of("record")) >= 20, timeout=60, what="the records produced after the restart")
        except AssertionError:
            kafkajs = (b.root / "kafkajs.log").read_text()[-3000:]
            raise AssertionError(f"kafkajs member's events: {events[-15:]}\n{kafkajs}\n{b.log_tail(30)}") from None
        time.sleep(3)  # heartbeats every 0.5 s reach the restarted coordinator
        assert not of("crash"), of("crash")
        assert len(of("joined")) == 1, f"the member joined again: {of('joined')}"
        got = sorted((e["partition"], e["offset"], e["value"]) for e in of("record"))
        assert got == before_and_after_restart(2)
    finally:
        proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_group_whose_members_expired_comes_back_empty_after_a_restart(broker_factory):
    """Members that died expire on the broker's timer, which stores the
    empty group: a restart must not bring them back."""
    b = broker_factory(*DELAY)
    topic, group = create_topic(b.bootstrap, unique("gone"), partitions=2), unique("g")
    members = [Member(b.bootstrap, topic, group, f"m{i}") for i in range(2)]
    try:
        wait_until(lambda: balanced(members, 2), timeout=60, what="two members sharing two partitions")
    finally:
        for m in members:
            m.kill9()
    a = admin(b.bootstrap)  # must outlive its futures

    def state():
        d = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        return str(d.state).rsplit(".", 1)[-1], len(d.members)

    wait_until(lambda: state() == ("EMPTY", 0), timeout=30, interval=0.5, what="both sessions (6 s) expired")
    b.restart()
    a = admin(b.bootstrap)
    assert state() == ("EMPTY", 0)


def test_delete_groups_refuses_a_group_with_members_and_deletes_an_empty_one_for_good(broker_factory):
    from confluent_kafka.admin import AdminClient

    b = broker_factory(*DELAY)
    topic = create_topic(b.bootstrap, unique("del"), partitions=2)
    busy, idle = unique("busy"), unique("idle")
    member = Member(b.bootstrap, topic, busy, "m0")
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": idle, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, p, 5) for p in range(2)], asynchronous=False)
    c.close()
    try:
        wait_until(lambda: member.assignment == [0, 1], timeout=60, what="the busy group's member assigned")
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        fs = a.delete_consumer_groups([busy, idle], request_timeout=10)
        with pytest.raises(KafkaException) as e:
            fs[busy].result(timeout=15)
        assert e.value.args[0].name() == "NON_EMPTY_GROUP"
        fs[idle].result(timeout=15)
    finally:
        member.stop()
    assert committed(b.bootstrap, idle, topic, 2) == {0: -1001, 1: -1001}
    b.kill9()
    b.start()
    assert committed(b.bootstrap, idle, topic, 2) == {0: -1001, 1: -1001}, "the tombstones replay"
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    listed = {g.group_id for g in a.list_consumer_groups(request_timeout=10).result(timeout=15).valid}
    assert idle not in listed and busy in listed


def test_commit_for_a_partition_that_does_not_exist_is_unknown_topic_or_partition(broker):
    topic = create_topic(broker.bootstrap, unique("nopart"), partitions=1)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "enable.auto.commit": False})
    try:
        with pytest.raises(KafkaException) as e:
            c.commit(offsets=[TopicPartition(topic, 5, 1)], asynchronous=False)
        assert "UNKNOWN_TOPIC_OR_PART" in str(e.value) or "Unknown topic or partition" in str(e.value)
    finally:
        c.close()


def test_kafka_python_group_consumer_consumes_and_commits(broker):
    from kafka import KafkaConsumer

    topic, group = create_topic(broker.bootstrap, unique("kpg"), partitions=2), unique("g")
    produce_rounds(broker.bootstrap, topic, 2, 20, "e")
    kc = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    got = []
    for m in kc:
        got.append((m.partition, m.offset, m.value.decode()))
        if len(got) == 40:
            break
    kc.commit()
    kc.close()
    assert sorted(got) == sorted((p, i, f"e-{p}-{i}") for p in range(2) for i in range(20))
    assert committed(broker.bootstrap, group, topic, 2) == {0: 20, 1: 20}


def test_kafkajs_group_consumer_consumes_and_commits(broker):
    topic, group = create_topic(broker.bootstrap, unique("jsg"), partitions=3), unique("g")
    produce_rounds(broker.bootstrap, topic, 3, 10, "f")
    out = subprocess.run(
        ["node", str(HERE / "js" / "group.js"), broker.bootstrap, topic, group, "30"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=HERE / "js",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    recs = json.loads(out.stdout.strip().splitlines()[-1])["records"]
    assert sorted((p, o, v) for p, o, _k, v in recs) == sorted((p, i, f"f-{p}-{i}") for p in range(3) for i in range(10))
    wait_until(lambda: committed(broker.bootstrap, group, topic, 3) == {0: 10, 1: 10, 2: 10}, timeout=10, what="kafkajs commits")


def lag_report(b, group):
    status, body = b.http_get(f"/v1/groups/{group}/lag")
    assert status == 200, body
    return json.loads(body)


def test_lag_endpoint_cli_and_metrics_report_lag_and_reach_zero(broker_factory):
    b = broker_factory(*DELAY)
    topic, group = create_topic(b.bootstrap, unique("lag"), partitions=2), unique("g")
    produce_rounds(b.bootstrap, topic, 2, 50, "l")
    c = Consumer(
        {
            "bootstrap.servers": b.bootstrap,
            "group.id": group,
            "client.id": "lag-checker",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
        }
    )
    c.subscribe([topic])
    try:
        wait_until(lambda: c.poll(0.1) is not None or len(c.assignment()) == 2, timeout=20, what="assignment")
        c.commit(offsets=[TopicPartition(topic, p, 20) for p in range(2)], asynchronous=False)
        r = lag_report(b, group)
        parts = {p["partition"]: p for p in r["partitions"] if p["topic"] == topic}
        assert {p: (v["committed"], v["log_end"], v["lag"]) for p, v in parts.items()} == {0: (20, 50, 30), 1: (20, 50, 30)}
        assert r["max_lag"] == 30 and r["members"] == 1
        assert all(v["client_id"] == "lag-checker" for v in parts.values())
        assert r["status"] != "STOPPED"
        cli = subprocess.run(
            [str(SPINDLE), "groups", "describe", group, "--admin", f"127.0.0.1:{b.admin_port}"], capture_output=True, text=True, timeout=20
        )
        assert cli.returncode == 0, cli.stderr
        rows = [l.split() for l in cli.stdout.splitlines() if l.startswith(topic)]
        assert sorted((int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows) == [(0, 20, 50, 30), (1, 20, 50, 30)]
        listed = subprocess.run([str(SPINDLE), "groups", "list", "--admin", f"127.0.0.1:{b.admin_port}"], capture_output=True, text=True, timeout=20)
        assert group in listed.stdout
        assert b.metric(f'spindle_consumer_group_max_lag{{group="{group}"}}') == 30
        c.commit(offsets=[TopicPartition(topic, p, 50) for p in range(2)], asynchronous=False)
        r = lag_report(b, group)
        assert r["max_lag"] == 0 and r["total_lag"] == 0 and r["status"] == "OK"
        assert b.metric(f'spindle_consumer_group_max_lag{{group="{group}"}}', default=-1) == 0
    finally:
        c.close()
    wait_until(lambda: lag_report(b, group)["status"] == "STOPPED", timeout=15, what="STOPPED once the member left")
    # reset-offsets: dry run changes nothing, --execute moves the commits.
    admin = f"127.0.0.1:{b.admin_port}"
    dry = subprocess.run([str(SPINDLE), "groups", "reset-offsets", group, "--to-earliest", "--admin", admin], capture_output=True, text=True, timeout=20)
    assert dry.returncode == 0 and "dry run" in dry.stdout, dry.stdout + dry.stderr
    assert committed(b.bootstrap, group, topic, 2) == {0: 50, 1: 50}
    done = subprocess.run(
        [str(SPINDLE), "groups", "reset-offsets", group, "--to-offset", "10", "--execute", "--admin", admin], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert committed(b.bootstrap, group, topic, 2) == {0: 10, 1: 10}
    assert lag_report(b, group)["max_lag"] == 40


def offsets_partition_figures(b):
    """{partition: (log_start, log_end, size_bytes)} of __consumer_offsets."""
    m = b.metrics()
    out = {}
    for key, v in m.items():
        if 'topic="__consumer_offsets"' not in key:
            continue
        p = int(key.split('partition="')[1].split('"')[0])
        cur = out.setdefault(p, [0, 0, 0])
        if key.startswith("spindle_partition_log_start_offset"):
            cur[0] = int(v)
        elif key.startswith("spindle_partition_log_end_offset"):
            cur[1] = int(v)
        elif key.startswith("spindle_partition_size_bytes"):
            cur[2] = int(v)
    return out


def test_consumer_offsets_is_compacted_and_keeps_the_latest_commits(broker_factory):
    # Compact after 64 KiB of growth, checked every 200 ms.
    b = broker_factory("--offsets-compact-bytes", "65536", "--log-retention-check-interval-ms", "200")
    topic, group = create_topic(b.bootstrap, unique("cmp"), partitions=10), unique("g")
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        for i in range(1, 1501):
            c.commit(offsets=[TopicPartition(topic, p, i * 10 + p) for p in range(10)], asynchronous=False)
    finally:
        c.close()
    # 1500 commits of 10 offsets is well over 1 MiB of records; compaction
    # moves the log start and keeps the partition small. Sampled right after
    # the last commit, the partition may still hold what arrived since the
    # last 200 ms check, so wait for the checks to catch up: once the commits
    # stop, at most the threshold (64 KiB) plus a segment (16 KiB) plus the
    # snapshot remains, not 1.5 MB.
    figures = {}

    def compacted():
        figs = offsets_partition_figures(b)
        busy = [f for f in figs.values() if f[1] >= 15000]
        figures["last"] = busy
        return busy and busy[0][0] > 10000 and busy[0][2] < 128 * 1024 and busy[0]

    try:
        wait_until(compacted, timeout=20, what="a compacted __consumer_offsets partition")
    except AssertionError:
        raise AssertionError(f"(log start, log end, bytes) of the busy partition: {figures.get('last')}")
    expect = {p: 15000 + p for p in range(10)}
    assert committed(b.bootstrap, group, topic, 10) == expect
    b.kill9()
    b.start()
    assert committed(b.bootstrap, group, topic, 10) == expect, "the snapshot replays after a crash"
