"""Shared helpers: unique names, polling, and confluent-kafka (librdkafka)
reads and writes that the tests use to check what other clients did."""

import itertools
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

_names = itertools.count()


def unique(prefix):
    """A topic name unique within the session."""
    return f"{prefix}-{next(_names)}-{uuid.uuid4().hex[:6]}"


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple
    timestamp: int


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})


def create_topic(bootstrap, name, partitions=1, config=None):
    a = admin(bootstrap)  # must outlive the futures
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
        request_timeout=10,
    )
    fs[name].result(timeout=15)
    return name


def producer(bootstrap, **conf):
    c = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "message.timeout.ms": 15000,
        "socket.timeout.ms": 5000,
    }
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(c)


def produce_all(p, topic, records, timeout=20):
    """Produces (partition, key, value, headers, timestamp) tuples; returns
    the delivery reports (msg objects) in send order, failing on any error."""
    reports = [None] * len(records)

    def cb(i):
        def done(err, msg):
            reports[i] = (err, msg)

        return done

    for i, (partition, key, value, headers, ts) in enumerate(records):
        kw = {"partition": partition, "key": key, "value": value, "headers": headers, "on_delivery": cb(i)}
        if ts is not None:
            kw["timestamp"] = ts
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(timeout)
    assert left == 0, f"{left} messages not delivered within {timeout} s"
    errors = [(i, e) for i, (e, _) in enumerate(reports) if e is not None]
    assert not errors, f"delivery failed: {errors[:5]}"
    return [m for _, m in reports]


def consumer(bootstrap, **conf):
    # group.id is required by librdkafka's consumer, but no group protocol is
    # used: partitions are assign()ed and nothing is committed.
    c = {
        "bootstrap.servers": bootstrap,
        "group.id": "interop-" + uuid.uuid4().hex[:8],
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 5000,
    }
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(c)


def to_rec(m):
    headers = tuple((k, v) for k, v in (m.headers() or []))
    return Rec(m.partition(), m.offset(), m.key(), m.value(), headers, m.timestamp()[1])


def consume(bootstrap, topic, partitions, start=0, timeout=30, **conf):
    """Reads `partitions` (a list, or a count) of `topic` from offset
    `start` (an int or a {partition: offset} dict) until each reports
    end-of-partition. Returns {partition: [Rec, ...]} in offset order."""
    if isinstance(partitions, int):
        partitions = list(range(partitions))
    starts = start if isinstance(start, dict) else {p: start for p in partitions}
    c = consumer(bootstrap, **conf)
    out = {p: [] for p in partitions}
    try:
        c.assign([TopicPartition(topic, p, starts[p]) for p in partitions])
        at_end = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, (
                f"{topic}: partitions {sorted(set(partitions) - at_end)} not at end after {timeout} s"
            )
            for m in c.consume(num_messages=1000, timeout=0.2):
                err = m.error()
                if err is None:
                    out[m.partition()].append(to_rec(m))
                    at_end.discard(m.partition())
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                else:
                    raise KafkaException(err)
    finally:
        c.close()
    return out


def topic_config(bootstrap, topic):
    from confluent_kafka.admin import ConfigResource, ResourceType

    r = ConfigResource(ResourceType.TOPIC, topic)
    a = admin(bootstrap)
    entries = a.describe_configs([r], request_timeout=10)[r].result(timeout=15)
    return {k: e.value for k, e in entries.items()}
