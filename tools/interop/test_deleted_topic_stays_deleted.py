"""A deleted topic's records never come back, even when the broker died
between saving the topic list and removing the partition directories."""

import json

from helpers import consume, create_topic, produce_all, producer, unique


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
    assert not (b.data_dir / f"{topic}-0").exists(), "orphaned partition directory removed at start-up"
    create_topic(b.bootstrap, topic, partitions=2)
    got = consume(b.bootstrap, topic, 2)
    assert got == {0: [], 1: []}, "records of the deleted topic came back"
    produce_all(producer(b.bootstrap), topic, [(0, b"k", b"new", None, None)])
    assert [r.value for r in consume(b.bootstrap, topic, [0])[0]] == [b"new"]
