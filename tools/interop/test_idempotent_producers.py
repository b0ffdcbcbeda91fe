"""Idempotent producers, as clients configure them by default:
kafka-python 3 enables idempotence (and acks=all) unless told otherwise,
and librdkafka does with enable.idempotence=true. Each asks for a producer
id (InitProducerId) and numbers its batches; the partition's leader checks
the numbers. The records come back in send order, once each, with their
content. Producer ids stay unique across a broker restart, and the
partitions' producer state survives a clean stop, a kill -9 and the
leader's death in a cluster: a batch retried across any of them is
recognised. Idle producers expire after producer.id.expiration.ms, also
while the broker is down."""

import re
import socket
import struct
import time

import pytest
from confluent_kafka import Producer
from kafka import KafkaProducer
from kafka.protocol.producer import InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse
from kafka.record.default_records import DefaultRecordBatchBuilder

from helpers import consume, create_topic, produce_all, unique, wait_until
from test_cluster_replication import bootstrap, cluster, create, settled

PARTITIONS, PER_PARTITION = 3, 200


def records():
    return [(i % PARTITIONS, b"k%d" % i, b"v%d-" % i * 20, None, None) for i in range(PARTITIONS * PER_PARTITION)]


def assert_read_back_in_order(b, topic, sent):
    got = consume(b.bootstrap, topic, PARTITIONS)
    for p in range(PARTITIONS):
        mine = [(k, v) for part, k, v, _, _ in sent if part == p]
        assert [(r.offset, r.key, r.value) for r in got[p]] == [(i, k, v) for i, (k, v) in enumerate(mine)]


def test_kafka_python_default_producer_is_idempotent_and_works(broker):
    topic = create_topic(broker.bootstrap, unique("idem-kp"), partitions=PARTITIONS)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, request_timeout_ms=15_000)
    assert p.config["enable_idempotence"] is True and p.config["acks"] == -1, "kafka-python 3's defaults"
    futures = [(p.send(topic, key=k, value=v, partition=part), part) for part, k, v, _, _ in records()]
    p.flush(30)
    offsets = {q: [f.get(15).offset for f, part in futures if part == q] for q in range(PARTITIONS)}
    p.close()
    assert offsets == {q: list(range(PER_PARTITION)) for q in range(PARTITIONS)}
    assert_read_back_in_order(broker, topic, records())


def test_librdkafka_idempotent_producer_across_a_restart(broker_factory):
    b = broker_factory()
    topic = create_topic(b.bootstrap, unique("idem-rd"), partitions=PARTITIONS)
    conf = {"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 5,
            "message.timeout.ms": 30000}
    first = produce_all(Producer(conf), topic, records())
    assert [m.offset() for m in first if m.partition() == 0] == list(range(PER_PARTITION))
    ids_before = int((b.data_dir / "producer-ids").read_text())

    b.stop()
    # The clean stop saved each partition's producer state, named by its
    # log end, for the restart.
    for p in range(PARTITIONS):
        assert (b.data_dir / f"{topic}-{p}" / f"{PER_PARTITION:020}.snapshot").stat().st_size > 0
    b.start()
    # A new producer after the restart gets a new id (a reused one would be
    # taken for the old producer's sequence and refused or deduplicated).
    second = produce_all(Producer(dict(conf, **{"bootstrap.servers": b.bootstrap})), topic, records())
    assert [m.offset() for m in second if m.partition() == 0] == list(range(PER_PARTITION, 2 * PER_PARTITION))
    wait_until(lambda: int((b.data_dir / "producer-ids").read_text()) > ids_before, timeout=5,
               what="a new block of producer ids reserved after the restart")
    got = consume(b.bootstrap, topic, PARTITIONS)
    for p in range(PARTITIONS):
        mine = [k for part, k, _, _, _ in records() if part == p]
        assert [r.key for r in got[p]] == mine + mine


# kafka-python's own protocol classes and batch builder, over one socket:
# the test decides which batch is retried, and when.

def _call(bootstrap, request, response_class, version):
    host, port = bootstrap.rsplit(":", 1)
    request.with_header(correlation_id=1, client_id="idempotence-test")
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(request.encode(version=version, header=True, framed=True))
        size = struct.unpack(">i", _recv(s, 4))[0]
        return response_class.decode(_recv(s, size), version=version, header=True)


def _recv(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "connection closed"
        out += chunk
    return out


def _batch(pid, epoch, seq, values):
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=pid,
                                        producer_epoch=epoch, base_sequence=seq, batch_size=1 << 20)
    for i, v in enumerate(values):
        builder.append(i, timestamp=None, key=b"k-%d" % (seq + i), value=v, headers=[])
    return bytes(builder.build())


def _produce(bootstrap, topic, batch):
    """(error code, base offset) of one acks=all produce of `batch` to partition 0."""
    Topic = ProduceRequest.TopicProduceData
    req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
        Topic(name=topic, partition_data=[Topic.PartitionProduceData(index=0, records=batch)])])
    resp = _call(bootstrap, req, ProduceResponse, 8)
    part = resp.responses[0].partition_responses[0]
    return part.error_code, part.base_offset


def _init_producer(bootstrap):
    """A new idempotent producer's id and epoch (InitProducerId v2)."""
    init = _call(bootstrap, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=-1,
                                                  producer_id=-1, producer_epoch=-1),
                 InitProducerIdResponse, 2)
    assert init.error_code == 0
    return init.producer_id, init.producer_epoch


def _known_producer(bootstrap, topic):
    """A producer whose first batch ("a", "b") the partition stored, so
    that it refuses the producer's batch after a gap (sequence 7)."""
    pid, epoch = _init_producer(bootstrap)
    assert _produce(bootstrap, topic, _batch(pid, epoch, 0, [b"a", b"b"])) == (0, 0)
    assert _produce(bootstrap, topic, _batch(pid, epoch, 7, [b"c"])) == (45, -1), "known: a gap is refused"
    return pid, epoch


def test_a_batch_retried_across_a_kill_9_is_not_stored_twice(broker_factory):
    """The broker dies after storing a batch whose acknowledgement the
    producer never saw; the producer retries it on the restarted broker.
    Kafka rebuilds its producer state from snapshots and the log, and
    answers the retry with the batch's first offset instead of storing it
    again. Before, Spindle's state started empty after a crash and the
    retry became a duplicate. Small segments, so that rolls write
    snapshots and the restart loads one and replays the batches after it."""
    b = broker_factory()
    topic = create_topic(b.bootstrap, unique("idem-kill"), partitions=1, config={"segment.bytes": "16384"})
    pid, epoch = _init_producer(b.bootstrap)
    values = [b"value-%04d-" % i * 80 for i in range(70)]
    batches = [_batch(pid, epoch, seq, values[seq:seq + 5]) for seq in range(0, 70, 5)]
    for n, batch in enumerate(batches[:12]):
        assert _produce(b.bootstrap, topic, batch) == (0, 5 * n)
    part_dir = b.data_dir / f"{topic}-0"
    assert len(list(part_dir.glob("*.log"))) > 3, "the segments rolled"
    wait_until(lambda: list(part_dir.glob("*.snapshot")), timeout=5, what="a producer-state snapshot")

    b.kill9()
    b.start()
    # The last batch again, as a producer retries an unacknowledged one.
    assert _produce(b.bootstrap, topic, batches[11]) == (0, 55), "answered with its first offset"
    # The partition's log opened (by that produce, at the latest) from a
    # snapshot (not offset 0) and replayed the batches after it.
    rebuilt = re.findall(r"producer state rebuilt .*?from=(\d+) end=(\d+)", b.log_text())
    assert rebuilt and all(0 < int(f) < int(e) == 60 for f, e in rebuilt), rebuilt
    assert _produce(b.bootstrap, topic, batches[7]) == (0, 35), "an older one of the last five too"
    assert _produce(b.bootstrap, topic, batches[13]) == (45, -1), "a gap: OUT_OF_ORDER_SEQUENCE_NUMBER"
    assert _produce(b.bootstrap, topic, batches[12]) == (0, 60)

    got = consume(b.bootstrap, topic, 1)[0]
    assert [(r.offset, r.key, r.value) for r in got] == [(i, b"k-%d" % i, values[i]) for i in range(65)]


def test_an_idle_producer_expires_after_producer_id_expiration_ms(broker_factory):
    """`producer.id.expiration.ms` (a flag here): at a retention check, a
    partition forgets a producer whose last batch is older, as Kafka
    does, and takes its next batch whatever its sequence."""
    b = broker_factory("--producer-id-expiration-ms", "1500", "--log-retention-check-interval-ms", "500")
    topic = create_topic(b.bootstrap, unique("idem-expire"), partitions=1)
    pid, epoch = _known_producer(b.bootstrap, topic)
    wait_until(lambda: _produce(b.bootstrap, topic, _batch(pid, epoch, 7, [b"c"])) == (0, 2), timeout=10,
               interval=0.5, what="the idle producer forgotten, its batch taken")
    assert _produce(b.bootstrap, topic, _batch(pid, epoch, 7, [b"c"])) == (0, 2), "and known again from there"
    got = consume(b.bootstrap, topic, 1)[0]
    assert [r.value for r in got] == [b"a", b"b", b"c"]


def test_a_producer_that_expired_while_the_broker_was_down_is_not_brought_back(broker_factory):
    """Kafka leaves expired producers out when it loads producer state:
    one idle past `producer.id.expiration.ms` across a restart is
    forgotten when its partition opens, not at the next retention check
    (here an hour away)."""
    b = broker_factory("--producer-id-expiration-ms", "2000", "--log-retention-check-interval-ms", "3600000")
    topic = create_topic(b.bootstrap, unique("idem-expire-open"), partitions=1)
    pid, epoch = _known_producer(b.bootstrap, topic)
    b.stop()  # the clean close snapshots the producer
    time.sleep(2.5)
    b.start()
    assert _produce(b.bootstrap, topic, _batch(pid, epoch, 7, [b"c"])) == (0, 2), "forgotten at the open"
    got = consume(b.bootstrap, topic, 1)[0]
    assert [r.value for r in got] == [b"a", b"b", b"c"]


@pytest.mark.timeout(300)
def test_a_new_leader_recognises_a_batch_retried_after_the_leader_died(broker_factory):
    """Three brokers, one partition on all three (min.insync.replicas=2).
    The leader acknowledges four idempotent batches (acks=all) and is
    killed with -9. The follower that takes over has the batches, and
    knows the producer from them: the retry of an acknowledged batch is
    answered with its offset, a gap is refused, and the next batch goes
    on where the last one ended."""
    brokers = cluster(broker_factory)
    topic = unique("idem-failover")
    create(brokers, topic, 1, min_isr=2)
    before = wait_until(lambda: settled(brokers, topic, 1, 3), timeout=30, what="a fully replicated topic")
    _, leader0, epoch0, *_ = before[0]
    victim = brokers[leader0]
    survivors = [b for b in brokers if b is not victim]
    pid, epoch = _init_producer(victim.bootstrap)
    values = [b"failover-%d" % i for i in range(30)]
    batches = [_batch(pid, epoch, seq, values[seq:seq + 5]) for seq in range(0, 30, 5)]
    for n, batch in enumerate(batches[:4]):
        assert _produce(victim.bootstrap, topic, batch) == (0, 5 * n)

    victim.kill9()
    after = wait_until(lambda: settled(survivors, topic, 1, 2), timeout=60, what="partition 0 led by a survivor")
    _, leader1, epoch1, *_ = after[0]
    assert leader1 != leader0 and epoch1 > epoch0
    new_leader = brokers[leader1].bootstrap
    assert _produce(new_leader, topic, batches[3]) == (0, 15), "answered with its offset, not stored again"
    assert _produce(new_leader, topic, batches[0]) == (0, 0), "the oldest of the last five too"
    assert _produce(new_leader, topic, batches[5]) == (45, -1), "a gap: OUT_OF_ORDER_SEQUENCE_NUMBER"
    assert _produce(new_leader, topic, batches[4]) == (0, 20)
    got = consume(bootstrap(survivors), topic, 1)[0]
    assert [(r.offset, r.value) for r in got] == list(enumerate(values[:25]))
