"""kafka-python (a pure-Python client, independent of librdkafka) against
spindle: admin topic lifecycle, produce, and consume by assign + seek."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from helpers import consume, unique

TIMEOUT_MS = 10_000


@pytest.fixture
def kadmin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS, client_id="interop-admin")
    yield a
    a.close()


def test_admin_create_list_delete_topics(broker, kadmin):
    a, b = unique("kp-a"), unique("kp-b")
    kadmin.create_topics([NewTopic(a, 3, 1), NewTopic(b, 1, 1, topic_configs={"retention.ms": "60000"})])
    assert {a, b} <= set(kadmin.list_topics())
    desc = {t["name"]: t for t in kadmin.describe_topics([a, b])}
    assert [t["error_code"] for t in desc.values()] == [0, 0]
    assert sorted(p["partition_index"] for p in desc[a]["partitions"]) == [0, 1, 2]
    assert [(p["leader_id"], p["replica_nodes"], p["isr_nodes"]) for p in desc[b]["partitions"]] == [(0, [0], [0])]
    with pytest.raises(TopicAlreadyExistsError):
        kadmin.create_topics([NewTopic(a, 1, 1)])
    kadmin.delete_topics([a])
    topics = set(kadmin.list_topics())
    assert a not in topics and b in topics


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_produce_and_consume_with_assign_and_seek(broker, kadmin, compression):
    topic = unique("kp-rt")
    kadmin.create_topics([NewTopic(topic, 2, 1)])
    base = int(time.time() * 1000) - 10_000
    # kafka-python 3 turns idempotence on by default (as the Java client
    # does); spindle has no InitProducerId yet, so ask for plain acks=all.
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type=compression,
                      enable_idempotence=False, request_timeout_ms=TIMEOUT_MS, linger_ms=5)
    sent = []
    for i in range(100):
        part = i % 2
        key = b"k%d" % i
        value = b"value %d " % i * (i % 7 + 1)
        headers = [("n", b"%d" % i), ("even", b"yes" if i % 2 == 0 else b"no")]
        md = p.send(topic, value=value, key=key, headers=headers, partition=part, timestamp_ms=base + i).get(10)
        assert (md.topic, md.partition) == (topic, part)
        sent.append((part, md.offset, key, value, headers, base + i))
    p.close()
    assert [s[1] for s in sent if s[0] == 0] == list(range(50))

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None,
                      request_timeout_ms=TIMEOUT_MS + 1000, fetch_max_wait_ms=100, consumer_timeout_ms=3000)
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = []
    deadline = time.monotonic() + 20
    while len(got) < len(sent) and time.monotonic() < deadline:
        for tp, msgs in c.poll(timeout_ms=500).items():
            for m in msgs:
                got.append((m.partition, m.offset, m.key, m.value, list(m.headers), m.timestamp))
    c.close()
    assert sorted(got) == sorted(sent)
    # A different client reads the same bytes.
    other = consume(broker.bootstrap, topic, 2)
    assert sorted((r.partition, r.offset, r.key, r.value, list(r.headers), r.timestamp)
                  for rs in other.values() for r in rs) == sorted(sent)
