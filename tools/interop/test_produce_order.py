"""A client pipelining produce requests to a partition gets its batches
stored, and acknowledged, at offsets in the order it sent them: Kafka
handles a connection's requests in order, and producers without
idempotence rely on it for per-partition ordering.

The partitions have 64 KiB segments, so appends keep rolling them, and
the topic's partitions are spread over both cores, so most requests cross
the core mesh. Each client keeps many requests in flight: librdkafka
(confluent-kafka) by default up to a million per connection, kafka-python
five."""

import pytest
from kafka import KafkaProducer

from helpers import consume, create_topic, produce_all, producer, unique

PARTITIONS, PER_PARTITION = 4, 150
VALUE = bytes(range(256)) * 16  # 4 KiB: a 16 KiB batch holds three


def records():
    """Round-robin over the partitions; the key says the send order."""
    return [(i % PARTITIONS, b"k%d" % i, VALUE, None, None) for i in range(PARTITIONS * PER_PARTITION)]


def assert_in_send_order(acked, b, topic):
    """`acked`: (partition, offset, key) per record, in send order."""
    for p in range(PARTITIONS):
        mine = [(o, k) for part, o, k in acked if part == p]
        assert [o for o, _ in mine] == list(range(PER_PARTITION)), f"partition {p}: offsets acknowledged in send order"
        stored = consume(b.bootstrap, topic, [p])[p]
        assert [(r.offset, r.key) for r in stored] == mine, f"partition {p}: stored in send order"
        assert all(r.value == VALUE for r in stored)


@pytest.mark.parametrize("acks", ["1", "all"])
def test_librdkafka_pipelined_batches_keep_their_order(broker_factory, acks):
    b = broker_factory()
    for _ in range(3):
        topic = create_topic(b.bootstrap, unique("order"), partitions=PARTITIONS, config={"segment.bytes": "65536"})
        p = producer(b.bootstrap, acks=acks, batch_size=16384, enable_idempotence=False)
        reports = produce_all(p, topic, records())
        assert_in_send_order([(m.partition(), m.offset(), m.key()) for m in reports], b, topic)


def test_kafka_python_pipelined_batches_keep_their_order(broker_factory):
    b = broker_factory()
    for _ in range(3):
        topic = create_topic(b.bootstrap, unique("order-kp"), partitions=PARTITIONS, config={"segment.bytes": "65536"})
        p = KafkaProducer(bootstrap_servers=b.bootstrap, acks=1, enable_idempotence=False, linger_ms=5,
                          batch_size=16384, max_in_flight_requests_per_connection=5, request_timeout_ms=15_000)
        futures = [(p.send(topic, key=k, value=v, partition=part), part, k) for part, k, v, _, _ in records()]
        p.flush(30)
        acked = [(part, f.get(15).offset, k) for f, part, k in futures]
        p.close()
        assert_in_send_order(acked, b, topic)
