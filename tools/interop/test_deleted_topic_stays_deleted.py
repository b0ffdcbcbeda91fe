"""A deleted topic's records never come back, even when the broker died
between saving the topic list and removing the partition directories, or
while it was freeing their files."""

import json

from helpers import admin, consume, create_topic, produce_all, producer, unique, wait_until


# Regression: partition directories are named TOPIC-PARTITION. A crash after
# DeleteTopics saved the registry but before the directories were removed
# left them behind, and creating a topic of the same name read the old
# records back.
def test_recreated_topic_does_not_resurrect_records_left_by_a_crashed_delete(broker_factory):
    b = broker_factory()
    topic = create_topic(b.bootstrap, unique("ghost"), partitions=2)
    produce_all(producer(b.bootstrap), topic, [(p, b"k", b"old", None, None) for p in range(2) for _ in range(5)])
    b.stop()
    # What a crash in the middle of the delete leaves: the topic is gone
    # from the registry, its directories are not.
    reg_path = b.data_dir / "topics.json"
    reg = json.loads(reg_path.read_text())
    del reg["topics"][topic]
    reg_path.write_text(json.dumps(reg))
    assert (b.data_dir / f"{topic}-0").is_dir()
    b.start()
    assert not (b.data_dir / f"{topic}-0").exists(), "orphaned partition directory moved away at start-up"
    wait_until(lambda: not list(b.data_dir.glob(f"{topic}-*-delete")), what="orphaned partitions removed")
    create_topic(b.bootstrap, topic, partitions=2)
    got = consume(b.bootstrap, topic, 2)
    assert got == {0: [], 1: []}, "records of the deleted topic came back"
    produce_all(producer(b.bootstrap), topic, [(0, b"k", b"new", None, None)])
    assert [r.value for r in consume(b.bootstrap, topic, [0])[0]] == [b"new"]


def tombstones(b, topic):
    return sorted(b.data_dir.glob(f"{topic}-*-delete"))


# A deleted partition's directory is renamed away at once and its files are
# freed at log.deletion.max.bytes.per.sec (here slow enough to see, and to
# kill the broker in the middle). A topic of the same name can be created
# meanwhile, and never sees the old records, before or after the kill.
def test_deleted_topic_files_are_freed_at_a_pace_and_after_a_kill_9(broker_factory):
    b = broker_factory("--log-deletion-max-bytes-per-sec", str(512 * 1024))
    topic = create_topic(b.bootstrap, unique("paced"), partitions=2)
    value = b"x" * 32 * 1024
    produce_all(producer(b.bootstrap), topic, [(p, b"k", value, None, None) for p in range(2) for _ in range(32)])
    a = admin(b.bootstrap)
    a.delete_topics([topic], operation_timeout=30)[topic].result()
    assert not (b.data_dir / f"{topic}-0").exists() and not (b.data_dir / f"{topic}-1").exists()
    # Over 1 MiB a partition at 512 KiB/s: both still being freed.
    assert [t.name.split(".")[0] for t in tombstones(b, topic)] == [f"{topic}-0", f"{topic}-1"]

    create_topic(b.bootstrap, topic, partitions=2)
    assert consume(b.bootstrap, topic, 2) == {0: [], 1: []}, "records of the deleted topic came back"
    produce_all(producer(b.bootstrap, acks="all"), topic, [(0, b"k", b"new", None, None)])
    assert tombstones(b, topic), "freeing 2 MiB at 512 KiB/s takes seconds"

    b.kill9()
    b.start()
    wait_until(lambda: not tombstones(b, topic), timeout=30, what="tombstones removed after the restart")
    got = consume(b.bootstrap, topic, 2)
    assert [r.value for r in got[0]] == [b"new"] and got[1] == []
