"""ElectLeaders (Kafka API 43) from two clients others wrote: confluent-kafka's
AdminClient.elect_leaders (librdkafka) and kafka-python's
KafkaAdminClient.elect_leaders, against real `spindle serve` processes.

Proved, on three brokers: a broker that shut down and came back leads none
of the partitions it led before (the automatic rebalance runs only every
300 s); a
preferred election asked of a broker that is not the controller gives each
of them back to it, on every broker's Metadata, reports success for those
and ELECTION_NOT_NEEDED for the rest, and loses no acknowledged record; an
unclean election of a partition with a leader is ELECTION_NOT_NEEDED; an
unknown partition is UNKNOWN_TOPIC_OR_PARTITION; a null partition list
elects every other partition that needs it (here __consumer_offsets ones)
and reports only those. `spindle cluster elect-leaders` runs the same
elections through a broker's admin listener. On a single node every
election is ELECTION_NOT_NEEDED.
"""

import socket
import struct

import pytest
from confluent_kafka import ElectionType, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient

import kwire
from helpers import admin, consume, create_topic, unique, wait_until
from test_cluster_replication import acks_all, agreed, bootstrap, cluster, create, send, settled, spindle_cli

ELECTION_NOT_NEEDED = 84
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_REQUEST = 42
API_ELECT_LEADERS = 43


def elect(bootstrap_servers, election, partitions):
    """confluent-kafka: {(topic, partition): error code or 0}."""
    # confluent-kafka 2.16.1's elect_leaders raises on its request_timeout and
    # operation_timeout arguments (its C binding's format string has one
    # specifier more than its keyword list), so the timeout is the default,
    # socket.timeout.ms.
    a = AdminClient({"bootstrap.servers": bootstrap_servers, "socket.timeout.ms": 30000})  # outlives the future
    f = a.elect_leaders(election, partitions)
    out = {}
    for tp, err in f.result(timeout=40).items():
        # A KafkaError (the docs say KafkaException; 2.16.1 hands the error itself).
        code = 0 if err is None else (err.args[0] if isinstance(err, KafkaException) else err).code()
        out[(tp.topic, tp.partition)] = code
    return out


def kafka_python_elect(bootstrap_servers, election_type, topic_partitions):
    """kafka-python: {(topic, partition): error code} from the raw response."""
    a = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=30000)
    try:
        resp = a.elect_leaders(election_type, topic_partitions, timeout_ms=30000, raise_errors=False)
    finally:
        a.close()
    out = {}
    for topic, results in resp.replica_election_results:
        for partition, code, _message in results:
            out[(topic, partition)] = code
    return out


def leaders(brokers, topic):
    v = agreed(brokers, topic)
    return v and {p: (leader, replicas[0]) for p, (_, leader, _, replicas, _) in v.items()}


@pytest.mark.timeout(400)
def test_preferred_election_gives_partitions_back_to_a_returned_broker(broker_factory):
    brokers = cluster(broker_factory)
    topic = unique("elect")
    create(brokers, topic, 6, min_isr=2)
    v = wait_until(lambda: settled(brokers, topic, 6, 3), timeout=45, what="the topic on every broker")
    assert all(leader == replicas[0] for _, leader, _, replicas, _ in v.values()), v
    tps = [TopicPartition(topic, p) for p in range(6)]

    # Nothing to do yet: every partition is led by its preferred replica.
    assert elect(bootstrap(brokers), ElectionType.PREFERRED, tps) == {(topic, p): ELECTION_NOT_NEEDED for p in range(6)}

    # Broker 1 shuts down (controlled: its leaderships move first) and comes back.
    returning = brokers[1]
    preferred_there = sorted(p for p, (_, _, _, r, _) in v.items() if r[0] == returning.node_id)
    assert preferred_there, v  # placement spreads six partitions over three brokers
    returning.stop()
    wait_until(lambda: (l := leaders(brokers, topic)) and all(lead != returning.node_id for lead, _ in l.values()),
               timeout=30, what="leadership away from the stopped broker")
    p = acks_all(brokers)
    acked = send(p, topic, [(None, f"during-{i}".encode()) for i in range(60)], partition=None)
    assert all(err is None for *_, err, _, _ in acked), acked[:3]
    returning.start(keep_ports=True)
    v = wait_until(lambda: settled(brokers, topic, 6, 3), timeout=60, what="the returned broker back in every ISR")
    moved = sorted(p for p, (_, leader, _, r, _) in v.items() if leader != r[0])
    # (The automatic rebalance would move them too, but only 300 s after the
    # controller took office; this test is done long before.)
    assert moved == preferred_there, ("without an election the returned broker leads none of them", v)

    # Asked of a broker that is not the controller: the request is forwarded.
    via = next(b for b in brokers if b.node_id != admin(b.bootstrap).list_topics(timeout=10).controller_id)
    got = elect(via.bootstrap, ElectionType.PREFERRED, tps)
    assert got == {(topic, p): 0 if p in moved else ELECTION_NOT_NEEDED for p in range(6)}, got
    # The broker asked answers once its own Metadata shows the new leaders; the others follow.
    l = leaders([via], topic)
    assert all(lead == pref for lead, pref in l.values()), l
    wait_until(lambda: (l := leaders(brokers, topic)) and all(lead == pref for lead, pref in l.values()),
               timeout=10, what="every broker naming the preferred leaders")

    # Every acknowledged record is read back from the new leaders, in order.
    by_partition = {}
    for _, value, _, part, offset in acked:
        by_partition.setdefault(part, []).append((offset, value))
    got = consume(bootstrap(brokers), topic, 6, timeout=60)
    for part, records in by_partition.items():
        assert [(r.offset, r.value) for r in got[part]] == sorted(records), part

    # kafka-python, and the other outcomes.
    k = kafka_python_elect(via.bootstrap, 0, {topic: [0, 99]})
    assert k == {(topic, 0): ELECTION_NOT_NEEDED, (topic, 99): UNKNOWN_TOPIC_OR_PARTITION}, k
    assert kafka_python_elect(via.bootstrap, 1, {topic: [2]}) == {(topic, 2): ELECTION_NOT_NEEDED}
    missing = unique("missing")
    got = elect(via.bootstrap, ElectionType.PREFERRED, [TopicPartition(missing, 0)])
    assert got == {(missing, 0): UNKNOWN_TOPIC_OR_PARTITION}, got
    # Every partition (a null list): only those that needed an election are
    # listed. The returning broker's __consumer_offsets leaderships are still
    # elsewhere: `spindle cluster elect-leaders` on one partition, then
    # confluent-kafka on the rest; the second time nothing is left.
    offsets = wait_until(lambda: agreed(brokers, "__consumer_offsets"), timeout=10, what="__consumer_offsets agreed")
    expected = {("__consumer_offsets", p): 0 for p, (_, lead, _, r, _) in offsets.items() if lead != r[0]}
    assert len(expected) > 1, "the stopped broker led some __consumer_offsets partitions"
    (_, first), *_ = sorted(expected)
    admin_of = f"127.0.0.1:{via.admin_port}"
    out = spindle_cli("cluster", "elect-leaders", "--topic", "__consumer_offsets", "--partitions", str(first),
                      "--admin", admin_of)
    assert [line.split() for line in out.splitlines()[1:]] == [["__consumer_offsets", str(first), "elected"]], out
    del expected[("__consumer_offsets", first)]
    assert elect(via.bootstrap, ElectionType.PREFERRED, None) == expected
    assert elect(via.bootstrap, ElectionType.PREFERRED, None) == {}
    assert spindle_cli("cluster", "elect-leaders", "--admin", admin_of).strip() == "no partition needed an election"
    for b in brokers:
        b.assert_no_panic()


def test_single_node_has_nothing_to_elect(broker):
    topic = unique("elect1")
    create_topic(broker.bootstrap, topic, partitions=2)
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1), TopicPartition(topic, 5)]
    got = elect(broker.bootstrap, ElectionType.PREFERRED, tps)
    assert got == {(topic, 0): ELECTION_NOT_NEEDED, (topic, 1): ELECTION_NOT_NEEDED,
                   (topic, 5): UNKNOWN_TOPIC_OR_PARTITION}, got
    assert elect(broker.bootstrap, ElectionType.UNCLEAN, tps[:1]) == {(topic, 0): ELECTION_NOT_NEEDED}
    assert elect(broker.bootstrap, ElectionType.PREFERRED, None) == {}
    k = kafka_python_elect(broker.bootstrap, 0, {topic: [1]})
    assert k == {(topic, 1): ELECTION_NOT_NEEDED}, k
    out = spindle_cli("cluster", "elect-leaders", "--topic", topic, "--admin", f"127.0.0.1:{broker.admin_port}")
    rows = [line.split(None, 2) for line in out.splitlines()[1:]]
    assert rows == [[topic, "0", "Leader election not needed for topic partition."],
                    [topic, "1", "Leader election not needed for topic partition."]], out


def raw_elect(b, version, election_type, topic, partitions):
    """ElectLeaders v0 or v1 on the wire: (response error code or None in v0,
    [(topic, partition, code, message)])."""
    body = b"" if version == 0 else struct.pack(">b", election_type)
    body += struct.pack(">i", 1) + kwire.kstring(topic) + struct.pack(">i", len(partitions))
    body += b"".join(struct.pack(">i", p) for p in partitions) + struct.pack(">i", 30000)
    with socket.create_connection(("127.0.0.1", b.port), timeout=10) as s:
        s.sendall(kwire.request(API_ELECT_LEADERS, version, 7, body))
        cid, resp = kwire.recv_frame(s)
    assert cid == 7
    r = kwire.Reader(resp)
    r.take(">i")  # throttle_time_ms
    error = None if version == 0 else r.take(">h")
    rows = r.array(lambda r: (r.string(), r.array(lambda r: (r.take(">i"), r.take(">h"), r.string()))))
    return error, [(t, p, code, msg) for t, ps in rows for p, code, msg in ps]


def test_election_type_and_versions_on_the_wire(broker):
    topic = unique("elect-wire")
    create_topic(broker.bootstrap, topic, partitions=1)
    not_needed = "Leader election not needed for topic partition."
    # v0 has no election type: preferred.
    assert raw_elect(broker, 0, None, topic, [0]) == (None, [(topic, 0, ELECTION_NOT_NEEDED, not_needed)])
    assert raw_elect(broker, 1, 1, topic, [0]) == (0, [(topic, 0, ELECTION_NOT_NEEDED, not_needed)])
    # A type Kafka does not define: the request is refused as a whole.
    assert raw_elect(broker, 1, 7, topic, [0]) == (INVALID_REQUEST, [(topic, 0, INVALID_REQUEST, "Unknown election type 7")])
    broker.assert_no_panic()
