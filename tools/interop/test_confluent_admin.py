"""confluent-kafka's AdminClient (librdkafka 2.x from PyPI) against spindle:
topic lifecycle, configs, partitions, and the error codes clients act on."""

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from helpers import admin, create_topic, produce_all, producer, consume, topic_config, unique

T = 15  # seconds for any admin future


def create(a, *topics, validate_only=False):
    fs = a.create_topics(list(topics), validate_only=validate_only, request_timeout=10, operation_timeout=10)
    return {name: f.exception(timeout=T) for name, f in fs.items()}


def error_code(exc):
    assert isinstance(exc, KafkaException), exc
    return exc.args[0].code()


def describe(a, resource):
    return a.describe_configs([resource], request_timeout=10)[resource].result(timeout=T)


def test_create_topic_with_partitions_and_configs(broker):
    a = admin(broker.bootstrap)
    name = unique("adm-create")
    cfg = {"retention.ms": "3600000", "max.message.bytes": "200000", "segment.bytes": "1048576"}
    assert create(a, NewTopic(name, num_partitions=3, replication_factor=1, config=cfg)) == {name: None}
    md = a.list_topics(timeout=10)
    assert name in md.topics
    t = md.topics[name]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2]
    assert all(p.leader == 0 and p.replicas == [0] and p.isrs == [0] for p in t.partitions.values())

    entries = describe(a, ConfigResource(ResourceType.TOPIC, name))
    for k, v in cfg.items():
        assert entries[k].value == v, k
        assert entries[k].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, k
    assert entries["cleanup.policy"].value == "delete"
    assert entries["retention.bytes"].source == ConfigSource.DEFAULT_CONFIG.value


def test_create_topic_validate_only_creates_nothing(broker):
    a = admin(broker.bootstrap)
    name = unique("adm-validate")
    assert create(a, NewTopic(name, num_partitions=2, replication_factor=1), validate_only=True) == {name: None}
    assert name not in a.list_topics(timeout=10).topics
    # Validation still rejects what a real create would reject.
    bad = create(a, NewTopic(name, num_partitions=2, replication_factor=1, config={"retention.ms": "soon"}),
                 validate_only=True)
    assert error_code(bad[name]) == KafkaError.INVALID_CONFIG
    assert name not in a.list_topics(timeout=10).topics


def test_describe_broker_configs(broker):
    a = admin(broker.bootstrap)
    entries = describe(a, ConfigResource(ResourceType.BROKER, "0"))
    assert entries["num.partitions"].value == "1"
    assert entries["message.max.bytes"].value == "1048588"
    assert entries["socket.request.max.bytes"].value == str(100 * 1024 * 1024)
    assert entries["log.dirs"].value == str(broker.data_dir)
    assert entries["default.replication.factor"].value == "1"
    assert all(e.is_read_only for e in entries.values())


def test_alter_configs_replaces_overrides(broker):
    a = admin(broker.bootstrap)
    name = create_topic(broker.bootstrap, unique("adm-alter"), config={"max.message.bytes": "300000"})
    r = ConfigResource(ResourceType.TOPIC, name, set_config={"retention.ms": "7200000"})
    a.alter_configs([r], request_timeout=10)[r].result(timeout=T)
    cfg = topic_config(broker.bootstrap, name)
    assert cfg["retention.ms"] == "7200000"
    # AlterConfigs replaces the whole set: the earlier override is gone.
    assert cfg["max.message.bytes"] == "1048588"


def test_incremental_alter_configs_sets_and_deletes(broker):
    a = admin(broker.bootstrap)
    name = create_topic(broker.bootstrap, unique("adm-incr"), config={"retention.ms": "1000000"})
    r = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry("segment.bytes", "2097152", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("max.message.bytes", "123456", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    a.incremental_alter_configs([r], request_timeout=10)[r].result(timeout=T)
    entries = describe(a, ConfigResource(ResourceType.TOPIC, name))
    assert entries["segment.bytes"].value == "2097152"
    assert entries["max.message.bytes"].value == "123456"
    assert entries["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert entries["retention.ms"].value == str(7 * 24 * 3600 * 1000)
    assert entries["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    # The new limit is enforced at once: 123456 bytes is now too large.
    p = producer(broker.bootstrap)
    errs = []
    p.produce(name, b"x" * 130_000, partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(15)
    assert [e.code() for e in errs] == [KafkaError.MSG_SIZE_TOO_LARGE]
    # A bad value is refused and changes nothing.
    bad = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("segment.bytes", "-5", incremental_operation=AlterConfigOpType.SET)])
    exc = a.incremental_alter_configs([bad], request_timeout=10)[bad].exception(timeout=T)
    assert error_code(exc) == KafkaError.INVALID_CONFIG
    assert topic_config(broker.bootstrap, name)["segment.bytes"] == "2097152"


def test_create_partitions_grows_topic(broker):
    a = admin(broker.bootstrap)
    name = create_topic(broker.bootstrap, unique("adm-parts"), partitions=2)
    fs = a.create_partitions([NewPartitions(name, 5)], request_timeout=10)
    fs[name].result(timeout=T)
    assert sorted(a.list_topics(name, timeout=10).topics[name].partitions) == [0, 1, 2, 3, 4]
    # The new partitions take writes and serve reads.
    p = producer(broker.bootstrap)
    produce_all(p, name, [(part, b"k%d" % part, b"v%d" % part, [("p", b"%d" % part)], None) for part in range(5)])
    got = consume(broker.bootstrap, name, 5)
    assert {part: [(r.offset, r.key, r.value, r.headers) for r in rs] for part, rs in got.items()} == {
        part: [(0, b"k%d" % part, b"v%d" % part, (("p", b"%d" % part),))] for part in range(5)
    }
    # Shrinking is refused.
    fs = a.create_partitions([NewPartitions(name, 3)], request_timeout=10)
    assert error_code(fs[name].exception(timeout=T)) == KafkaError.INVALID_PARTITIONS


def test_delete_topics(broker):
    a = admin(broker.bootstrap)
    name = create_topic(broker.bootstrap, unique("adm-del"), partitions=2)
    produce_all(producer(broker.bootstrap), name, [(0, b"k", b"v", None, None)])
    a.delete_topics([name], request_timeout=10, operation_timeout=10)[name].result(timeout=T)
    assert name not in a.list_topics(timeout=10).topics
    exc = a.describe_configs([ConfigResource(ResourceType.TOPIC, name)], request_timeout=10)
    exc = list(exc.values())[0].exception(timeout=T)
    assert error_code(exc) == KafkaError.UNKNOWN_TOPIC_OR_PART
    # Deleting again: unknown topic.
    exc = a.delete_topics([name], request_timeout=10)[name].exception(timeout=T)
    assert error_code(exc) == KafkaError.UNKNOWN_TOPIC_OR_PART
    # The name can be reused, and the new topic starts empty.
    create_topic(broker.bootstrap, name, partitions=1)
    assert consume(broker.bootstrap, name, 1) == {0: []}


@pytest.mark.parametrize(
    "case, new_topic, code",
    [
        ("replication factor 3", dict(num_partitions=1, replication_factor=3), KafkaError.INVALID_REPLICATION_FACTOR),
        ("bad config value", dict(num_partitions=1, replication_factor=1, config={"retention.ms": "forever"}),
         KafkaError.INVALID_CONFIG),
        ("unknown config", dict(num_partitions=1, replication_factor=1, config={"no.such.config": "1"}),
         KafkaError.INVALID_CONFIG),
        ("zero partitions", dict(num_partitions=0, replication_factor=1), KafkaError.INVALID_PARTITIONS),
    ],
)
def test_create_topic_errors(broker, case, new_topic, code):
    a = admin(broker.bootstrap)
    name = unique("adm-err")
    res = create(a, NewTopic(name, **new_topic))
    assert error_code(res[name]) == code, case
    assert name not in a.list_topics(timeout=10).topics


def test_create_existing_topic_is_topic_already_exists(broker):
    a = admin(broker.bootstrap)
    name = create_topic(broker.bootstrap, unique("adm-exists"), partitions=2)
    res = create(a, NewTopic(name, num_partitions=4, replication_factor=1))
    assert error_code(res[name]) == KafkaError.TOPIC_ALREADY_EXISTS
    # The original is untouched.
    assert sorted(a.list_topics(name, timeout=10).topics[name].partitions) == [0, 1]


def test_invalid_topic_name_is_rejected(broker):
    a = admin(broker.bootstrap)
    res = create(a, NewTopic("bad/name", num_partitions=1, replication_factor=1))
    assert error_code(res["bad/name"]) == KafkaError.TOPIC_EXCEPTION


def test_describe_cluster_and_topics(broker):
    from confluent_kafka import TopicCollection

    a = admin(broker.bootstrap)
    cluster = a.describe_cluster(request_timeout=10).result(timeout=T)
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(0, "127.0.0.1", broker.port)]
    assert cluster.controller.id == 0
    assert cluster.cluster_id and len(cluster.cluster_id) == 22
    name = create_topic(broker.bootstrap, unique("adm-desc"), partitions=3)
    fs = a.describe_topics(TopicCollection([name]), request_timeout=10)
    d = fs[name].result(timeout=T)
    assert d.name == name and not d.is_internal
    assert d.topic_id is not None
    assert [(p.id, p.leader.id, [r.id for r in p.replicas], [r.id for r in p.isr]) for p in d.partitions] == [
        (i, 0, [0], [0]) for i in range(3)
    ]
    # The cluster id is stable across calls (it is stored in the data directory).
    assert a.describe_cluster(request_timeout=10).result(timeout=T).cluster_id == cluster.cluster_id
