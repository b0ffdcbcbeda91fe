"""Segments that DeleteRecords or retention drops are renamed out of the log
at once and their files freed later (after log.segment.delete.delay.ms, at
log.deletion.max.bytes.per.sec). A kill -9 in between leaves the files on
disk: the restarted broker never reads them back, and frees them."""

from confluent_kafka import TopicPartition

from helpers import admin, consume, create_topic, produce_all, producer, unique, wait_until


def deleted_files(b, topic):
    return sorted((b.data_dir / f"{topic}-0").glob("*.deleted"))


def test_dropped_segments_wait_out_the_delay_and_are_freed_after_a_kill_9(broker_factory):
    b = broker_factory("--log-segment-delete-delay-ms", "5000", "--log-segment-recycle-enable", "false")
    topic = create_topic(b.bootstrap, unique("delseg"), partitions=1, config={"segment.bytes": "65536"})
    value = bytes(range(256)) * 16
    # 800 KiB in batches of at most 16 KiB: a dozen 64 KiB segments.
    reports = produce_all(producer(b.bootstrap, acks="all", batch_size=16384), topic,
                          [(0, b"k%d" % i, value, None, None) for i in range(200)])
    # A pipelined producer's batches land in send order
    # (test_produce_order.py).
    acked = [(m.offset(), m.key()) for m in reports]
    assert acked == [(i, b"k%d" % i) for i in range(200)]
    a = admin(b.bootstrap)
    res = list(a.delete_records([TopicPartition(topic, 0, 150)], request_timeout=10).values())[0].result(timeout=15)
    assert res.low_watermark == 150

    held = deleted_files(b, topic)
    assert len(held) >= 8, f"dropped segments renamed away, not freed yet: {held}"
    for f in held:
        base, ext = f.name.split(".")[:2]
        assert len(base) == 20 and base.isdigit() and ext == "log", f.name
        assert f.stat().st_size > 0, f.name

    b.kill9()
    b.start()
    # The restart finds them and frees them again, after the delay.
    assert deleted_files(b, topic) == held
    got = consume(b.bootstrap, topic, 1, start=-2)  # OFFSET_BEGINNING
    assert [(r.offset, r.key) for r in got[0]] == acked[150:]
    assert all(r.value == value for r in got[0])
    wait_until(lambda: not deleted_files(b, topic), timeout=30, what="deleted segments freed after the restart")
    assert [r.offset for r in consume(b.bootstrap, topic, 1, start=-2)[0]] == list(range(150, 200))
