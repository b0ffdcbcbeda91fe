"""Idempotent producers, as clients configure them by default:
kafka-python 3 enables idempotence (and acks=all) unless told otherwise,
and librdkafka does with enable.idempotence=true. Each asks for a producer
id (InitProducerId) and numbers its batches; the partition's leader checks
the numbers. The records come back in send order, once each, with their
content. Producer ids stay unique across a broker restart, and a clean
stop saves the partitions' producer state."""

from confluent_kafka import Producer
from kafka import KafkaProducer

from helpers import consume, create_topic, produce_all, unique, wait_until

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
    # The clean stop saved each partition's producer state for the restart.
    for p in range(PARTITIONS):
        assert (b.data_dir / f"{topic}-{p}" / "producer-state.snapshot").stat().st_size > 0
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
