"""confluent-kafka's Producer and Consumer (librdkafka 2.x from PyPI) against
spindle: every acks setting and compression codec, message-size limits,
many partitions under concurrent producers, and offset lookups."""

import threading
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import OffsetSpec

from helpers import admin, consume, consumer, create_topic, produce_all, producer, unique, wait_until

COMPRESSIONS = ["none", "gzip", "snappy", "lz4", "zstd"]
ACKS = ["0", "1", "all"]


def make_records(n, partitions, base_ts):
    """Records with every shape a client can send: null and empty keys and
    values, repeated and null-valued headers, compressible and not."""
    recs = []
    for i in range(n):
        part = i % partitions
        key = None if i % 17 == 0 else (b"" if i % 19 == 0 else b"key-%d" % i)
        if i % 23 == 0:
            value = None
        elif i % 2:
            value = (b"value-%d " % i) * (1 + i % 50)
        else:
            value = bytes((i * 7 + j * 13) % 256 for j in range(i % 300))
        headers = [("seq", b"%d" % i), ("rep", b"a"), ("rep", b"b")]
        if i % 5 == 0:
            headers.append(("null", None))
        recs.append((part, key, value, headers, base_ts + i))
    return recs


def expected(recs, partitions):
    """What a consumer should see: {partition: [(offset, key, value, headers, ts)]}."""
    out = {p: [] for p in range(partitions)}
    for part, key, value, headers, ts in recs:
        out[part].append((len(out[part]), key, value, tuple(headers), ts))
    return out


def seen(got):
    return {p: [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in rs] for p, rs in got.items()}


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("acks", ACKS)
def test_produce_and_read_back_identically(broker, acks, compression):
    topic = create_topic(broker.bootstrap, unique(f"rt-{acks}-{compression}"), partitions=2)
    base_ts = int(time.time() * 1000) - 3_600_000
    recs = make_records(300, 2, base_ts)
    # Small batches so one produce request carries several batches per partition.
    p = producer(broker.bootstrap, acks=acks, compression_type=compression, batch_num_messages=40)
    reports = produce_all(p, topic, recs)
    want = expected(recs, 2)
    if acks != "0":
        # Each acknowledged offset is where the record ends up.
        for (part, *_), m in zip(recs, reports):
            assert m.partition() == part
        by_part = {0: [], 1: []}
        for m in reports:
            by_part[m.partition()].append(m.offset())
        assert by_part == {pt: [w[0] for w in want[pt]] for pt in (0, 1)}
    got = consume(broker.bootstrap, topic, 2)
    assert seen(got) == want


def test_record_just_under_max_message_bytes_succeeds_and_over_fails(broker):
    limit = 100_000
    topic = create_topic(broker.bootstrap, unique("maxmsg"), config={"max.message.bytes": str(limit)})
    # A batch of one record with a null key, no headers and a value of V
    # bytes (V needs a 3-byte varint) is V + 72 bytes: 61 of batch header,
    # 3 of record length, 8 of record fields.
    fits = limit - 72
    p = producer(broker.bootstrap, linger_ms=0)
    ok = produce_all(p, topic, [(0, None, b"a" * fits, None, None)])
    assert ok[0].offset() == 0
    errs = []
    for size in (fits + 1, limit + 1, 500_000):
        p.produce(topic, b"b" * size, partition=0, on_delivery=lambda e, m: errs.append(e))
        p.flush(15)
    assert [e.code() if e else None for e in errs] == [KafkaError.MSG_SIZE_TOO_LARGE] * 3
    ok = produce_all(p, topic, [(0, b"after", b"small", None, None)])
    assert ok[0].offset() == 1
    got = consume(broker.bootstrap, topic, 1)[0]
    assert [(r.offset, r.key, len(r.value)) for r in got] == [(0, None, fits), (1, b"after", 5)]
    assert got[0].value == b"a" * fits


def test_record_over_broker_message_max_bytes_is_rejected(broker):
    # The broker default (message.max.bytes 1048588) applies without a topic override.
    topic = create_topic(broker.bootstrap, unique("maxmsg-broker"))
    p = producer(broker.bootstrap, message_max_bytes=3_000_000, linger_ms=0)
    errs = []
    p.produce(topic, b"z" * 1_100_000, partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(15)
    assert [e.code() if e else None for e in errs] == [KafkaError.MSG_SIZE_TOO_LARGE]
    ok = produce_all(p, topic, [(0, None, b"y" * 1_000_000, None, None)])
    assert ok[0].offset() == 0


def test_many_partitions_concurrent_producers_exactly_once_in_order(broker):
    partitions, threads, per_thread = 64, 4, 1500
    topic = create_topic(broker.bootstrap, unique("many"), partitions=partitions)
    acked = [[] for _ in range(threads)]
    failures = []

    def run(tid):
        p = producer(broker.bootstrap, acks="all", linger_ms=2)

        def cb(err, m):
            if err is not None:
                failures.append(err)
            else:
                acked[tid].append((m.partition(), m.offset(), m.key(), m.value()))

        for i in range(per_thread):
            part = (i * 7 + tid) % partitions
            while True:
                try:
                    p.produce(topic, b"t%d-%d" % (tid, i), key=b"%d:%d" % (tid, i), partition=part, on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        assert p.flush(30) == 0

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not failures, failures[:5]
    all_acked = [a for per in acked for a in per]
    assert len(all_acked) == threads * per_thread

    got = consume(broker.bootstrap, topic, partitions)
    at = {}
    for part, rs in got.items():
        # Offsets are dense from 0, with no gaps and no duplicates.
        assert [r.offset for r in rs] == list(range(len(rs))), part
        for r in rs:
            at[(part, r.offset)] = (r.key, r.value)
    # Every acknowledged record is exactly where its acknowledgement said.
    for part, off, key, value in all_acked:
        assert at.get((part, off)) == (key, value), (part, off)
    assert len(at) == len(all_acked), "records that nobody acknowledged"
    # Each producer's records keep their send order within a partition.
    for part, rs in got.items():
        last = {}
        for r in rs:
            tid, i = map(int, r.key.split(b":"))
            assert i > last.get(tid, -1), (part, r.offset)
            last[tid] = i


def test_list_offsets_and_offsets_for_times(broker):
    topic = create_topic(broker.bootstrap, unique("offsets"), partitions=2)
    base = int(time.time() * 1000) - 600_000
    # Partition 0: timestamps base, base+10, ..., base+90; partition 1 stays empty.
    produce_all(producer(broker.bootstrap), topic, [(0, b"k%d" % i, b"v%d" % i, None, base + 10 * i) for i in range(10)])
    a = admin(broker.bootstrap)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

    def list_offsets(spec):
        fs = a.list_offsets({tp0: spec, tp1: spec}, request_timeout=10)
        return {tp.partition: (r.offset, r.timestamp) for tp, f in fs.items() for r in [f.result(timeout=15)]}

    assert {p: o for p, (o, _) in list_offsets(OffsetSpec.earliest()).items()} == {0: 0, 1: 0}
    assert {p: o for p, (o, _) in list_offsets(OffsetSpec.latest()).items()} == {0: 10, 1: 0}
    mx = list_offsets(OffsetSpec.max_timestamp())
    assert mx[0] == (9, base + 90)
    assert mx[1][0] == -1
    at = list_offsets(OffsetSpec.for_timestamp(base + 35))
    assert at[0] == (4, base + 40)
    assert at[1][0] == -1

    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(tp0, timeout=10) == (0, 10)
        assert c.get_watermark_offsets(tp1, timeout=10) == (0, 0)
        r = c.offsets_for_times([TopicPartition(topic, 0, base + 50), TopicPartition(topic, 1, base)], timeout=10)
        assert [(x.partition, x.offset) for x in r] == [(0, 5), (1, -1)]
        r = c.offsets_for_times([TopicPartition(topic, 0, base + 91)], timeout=10)
        assert r[0].offset == -1
        r = c.offsets_for_times([TopicPartition(topic, 0, 0)], timeout=10)
        assert r[0].offset == 0
    finally:
        c.close()


def test_delete_records_moves_log_start(broker):
    topic = create_topic(broker.bootstrap, unique("delrec"), partitions=1)
    produce_all(producer(broker.bootstrap), topic, [(0, None, b"v%d" % i, None, None) for i in range(10)])
    a = admin(broker.bootstrap)
    fs = a.delete_records([TopicPartition(topic, 0, 4)], request_timeout=10)
    res = list(fs.values())[0].result(timeout=15)
    assert res.low_watermark == 4
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (4, 10)
    finally:
        c.close()
    got = consume(broker.bootstrap, topic, 1, start=-2)  # OFFSET_BEGINNING
    assert [(r.offset, r.value) for r in got[0]] == [(i, b"v%d" % i) for i in range(4, 10)]


def test_retention_deletes_what_acks_1_wrote(broker_factory):
    # acks=1 under the default flush policy never asks for an fdatasync;
    # retention must still delete the oldest segments (it once waited for
    # them to become durable, which nothing did). Checked every 200 ms.
    b = broker_factory("--log-retention-check-interval-ms", "200")
    topic = create_topic(b.bootstrap, unique("ret1"), partitions=1,
                         config={"segment.bytes": "65536", "retention.bytes": "131072"})
    value = bytes(range(256)) * 4
    # Batches of at most 16 KiB, so the records span many segments.
    p = producer(b.bootstrap, acks="1", batch_size=16384)
    produce_all(p, topic, [(0, None, value, None, None) for _ in range(1000)])
    c = consumer(b.bootstrap)
    try:
        def low():
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
            assert hi == 1000
            return lo if lo > 0 else None
        start = wait_until(low, timeout=15, what="retention to move the log start")
    finally:
        c.close()
    # About 1 MB written: what is left is the limit and at most a segment
    # or two more, read back intact from the new start to the end.
    assert 1000 - start < 400, f"only offsets below {start} were deleted"
    got = consume(b.bootstrap, topic, 1, start=-2)[0]  # OFFSET_BEGINNING
    assert [r.offset for r in got] == list(range(start, 1000))
    assert all(r.value == value for r in got)


def test_recycled_segment_files_serve_only_new_records_after_kill_9(broker_factory):
    # Retention keeps the newest deleted segment's file and the next roll
    # writes over it (log.segment.recycle.enable, on by default). The old
    # records left in it past the new data must never come back: not in a
    # fetch, and not after kill -9 and recovery. Every record has one size,
    # so old batches sit where new ones would, at the offsets the log
    # expects next if they were not older.
    b = broker_factory("--log-retention-check-interval-ms", "200")
    topic = create_topic(b.bootstrap, unique("recycle"), partitions=1,
                         config={"segment.bytes": "65536", "retention.bytes": "131072"})
    p = producer(b.bootstrap, acks="all", batch_size=16384)
    c = consumer(b.bootstrap)
    sent = []
    start = 0
    try:
        for r in range(6):
            recs = [f"round {r} record {i} ".encode().ljust(1000, b".") for i in range(150)]
            produce_all(p, topic, [(0, None, v, None, None) for v in recs])
            sent += recs
            if r == 0:
                continue  # about 150 KB: nothing beyond retention.bytes yet

            def trimmed():
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
                assert hi == len(sent)
                return lo if lo > start else None
            # Retention ran (and kept a file) before the next round rolls.
            start = wait_until(trimmed, timeout=15, what=f"retention after round {r}")
    finally:
        c.close()
    recycled = b.metric("spindle_segments_recycled_total")
    assert recycled >= 3, f"only {recycled} segments rolled into recycled files"
    for when in ("before", "after"):
        got = consume(b.bootstrap, topic, 1, start=-2)[0]  # OFFSET_BEGINNING
        start = got[0].offset
        assert len(sent) - start < 400
        assert [r.offset for r in got] == list(range(start, len(sent))), when
        assert [r.value for r in got] == sent[start:], when
        if when == "before":
            b.kill9()
            b.start()


def test_small_fetch_limits_still_return_every_record(broker):
    # KIP-74: a batch larger than max.partition.fetch.bytes / fetch.max.bytes
    # is still returned whole when it is the first thing in the response, so
    # a consumer with small limits makes progress instead of stalling.
    topic = create_topic(broker.bootstrap, unique("smallfetch"), partitions=3)
    recs = [(i % 3, b"k%d" % i, bytes([i % 251]) * (2000 + 300 * (i % 7)), None, None) for i in range(90)]
    produce_all(producer(broker.bootstrap, batch_num_messages=5, linger_ms=20), topic, recs)
    got = consume(broker.bootstrap, topic, 3, max_partition_fetch_bytes=1024, fetch_max_bytes=4096,
                  message_max_bytes=2048)
    for part in range(3):
        want = [(k, v) for p, k, v, _, _ in recs if p == part]
        assert [(r.offset, r.key, r.value) for r in got[part]] == [(i, k, v) for i, (k, v) in enumerate(want)]


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_consume_from_an_offset_inside_a_batch(broker, compression):
    # The broker answers with the whole batch containing the offset; the
    # client drops the records before it.
    topic = create_topic(broker.bootstrap, unique(f"midbatch-{compression}"))
    recs = [(0, b"k%d" % i, b"v%d" % i, None, None) for i in range(20)]
    p = producer(broker.bootstrap, compression_type=compression, linger_ms=50, batch_num_messages=1000)
    produce_all(p, topic, recs)
    got = consume(broker.bootstrap, topic, 1, start=7)[0]
    assert [(r.offset, r.key, r.value) for r in got] == [(i, b"k%d" % i, b"v%d" % i) for i in range(7, 20)]


def test_fetch_out_of_range_resets_per_auto_offset_reset(broker):
    topic = create_topic(broker.bootstrap, unique("oor"))
    produce_all(producer(broker.bootstrap), topic, [(0, b"k%d" % i, b"v%d" % i, None, None) for i in range(5)])
    # Past the end: OFFSET_OUT_OF_RANGE from the broker, and librdkafka
    # resets to the earliest offset as configured.
    got = consume(broker.bootstrap, topic, 1, start=1000, auto_offset_reset="earliest")[0]
    assert [(r.offset, r.value) for r in got] == [(i, b"v%d" % i) for i in range(5)]
    # With auto.offset.reset=error the consumer surfaces the error instead.
    c = consumer(broker.bootstrap, auto_offset_reset="error")
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        deadline = time.monotonic() + 15
        err = None
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is not None and m.error().code() != KafkaError._PARTITION_EOF:
                err = m.error()
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
    finally:
        c.close()


def test_auto_created_topic_and_unknown_topic_metadata(broker):
    # Producing to a missing topic creates it with num.partitions (1).
    topic = unique("auto")
    reports = produce_all(producer(broker.bootstrap), topic, [(0, b"k", b"auto-created", None, None)])
    assert reports[0].offset() == 0
    md = admin(broker.bootstrap).list_topics(topic, timeout=10)
    assert sorted(md.topics[topic].partitions) == [0]
    assert consume(broker.bootstrap, topic, 1)[0][0].value == b"auto-created"
    # A metadata request that does not allow auto-creation does not create.
    missing = unique("missing")
    c = consumer(broker.bootstrap, allow_auto_create_topics=False)
    try:
        md = c.list_topics(missing, timeout=10)
        assert md.topics[missing].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        c.close()
    assert missing not in admin(broker.bootstrap).list_topics(timeout=10).topics
