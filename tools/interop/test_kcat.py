"""kcat (librdkafka's command-line client, from Debian) against spindle:
metadata, produce with keys and headers, and consume from the beginning,
from the end and from a timestamp."""

import json
import subprocess
import time

from helpers import create_topic, produce_all, producer, unique, wait_until

KCAT_TIMEOUT_S = 20


def kcat(broker, *args, input=None, check=True):
    cmd = ["kcat", "-b", broker.bootstrap, "-X", "socket.timeout.ms=5000", *args]
    r = subprocess.run(cmd, input=input, capture_output=True, timeout=KCAT_TIMEOUT_S)
    if check:
        assert r.returncode == 0, f"{cmd} exited {r.returncode}: {r.stderr.decode(errors='replace')}"
    return r


# Field and record separators no test value contains.
FS, RS = "\x1f", "\x1e"
FORMAT = f"%p{FS}%o{FS}%k{FS}%s{FS}%h{FS}%T{RS}"


def parse(out):
    recs = []
    for line in out.decode().split(RS):
        if not line:
            continue
        p, o, k, v, h, ts = line.split(FS)
        recs.append({"partition": int(p), "offset": int(o), "key": k, "value": v, "headers": h, "ts": int(ts)})
    return recs


def test_metadata_lists_the_broker_and_topics(broker):
    a = create_topic(broker.bootstrap, unique("kcat-md-a"), partitions=3)
    b = create_topic(broker.bootstrap, unique("kcat-md-b"), partitions=1)
    md = json.loads(kcat(broker, "-L", "-J").stdout)
    assert md["controllerid"] == 0
    assert [(br["id"], br["name"]) for br in md["brokers"]] == [(0, broker.bootstrap)]
    topics = {t["topic"]: t for t in md["topics"]}
    assert a in topics and b in topics
    for name, n in [(a, 3), (b, 1)]:
        parts = sorted(topics[name]["partitions"], key=lambda p: p["partition"])
        assert [p["partition"] for p in parts] == list(range(n))
        for p in parts:
            assert p["leader"] == 0
            assert [r["id"] for r in p["replicas"]] == [0]
            assert [r["id"] for r in p["isrs"]] == [0]
    # Metadata for one topic only.
    one = json.loads(kcat(broker, "-L", "-J", "-t", b).stdout)
    assert [t["topic"] for t in one["topics"]] == [b]


def test_produce_with_keys_and_headers_then_consume_from_beginning(broker):
    topic = create_topic(broker.bootstrap, unique("kcat-kv"), partitions=2)
    values = [f"value-{i}-" + "x" * (i * 37) for i in range(20)] + ["ünïcödé ✓", "v with spaces"]
    lines = "".join(f"key-{i}|{v}\n" for i, v in enumerate(values))
    before = int(time.time() * 1000)
    for part in (0, 1):
        kcat(broker, "-P", "-t", topic, "-p", str(part), "-K", "|", "-H", "h1=one", "-H", f"part={part}",
             input=lines.encode())
    after = int(time.time() * 1000)
    out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", FORMAT).stdout
    recs = parse(out)
    assert len(recs) == 2 * len(values)
    for part in (0, 1):
        mine = [r for r in recs if r["partition"] == part]
        assert [r["offset"] for r in mine] == list(range(len(values)))
        assert [r["key"] for r in mine] == [f"key-{i}" for i in range(len(values))]
        assert [r["value"] for r in mine] == values
        assert all(r["headers"] == f"h1=one,part={part}" for r in mine), mine[0]["headers"]
        assert all(before - 1000 <= r["ts"] <= after + 1000 for r in mine), (before, after, mine[0]["ts"])
    # The same records through kcat's JSON envelope, which also carries the timestamp type.
    js = [json.loads(line) for line in kcat(broker, "-C", "-t", topic, "-p", "1", "-o", "beginning", "-e", "-q",
                                            "-J").stdout.decode().splitlines()]
    assert [(m["offset"], m["key"], m["payload"]) for m in js] == [
        (i, f"key-{i}", v) for i, v in enumerate(values)
    ]
    assert all(m["tstype"] == "create" for m in js)
    assert all(m["headers"] == ["h1", "one", "part", "1"] for m in js)


def test_consume_from_end_returns_only_new_records(broker):
    topic = create_topic(broker.bootstrap, unique("kcat-end"), partitions=1)
    kcat(broker, "-P", "-t", topic, "-K", ":", input=b"".join(b"old%d:old-value-%d\n" % (i, i) for i in range(5)))
    # Nothing past the end yet.
    r = kcat(broker, "-C", "-t", topic, "-o", "end", "-e", "-q", "-f", FORMAT)
    assert r.stdout == b""
    # A consumer positioned at the end sees exactly what arrives later. It
    # resolves "end" with ListOffsets: wait for that before producing.
    list_offsets = 'spindle_requests_total{api="ListOffsets"}'
    seen = broker.metric(list_offsets)
    c = subprocess.Popen(
        ["kcat", "-b", broker.bootstrap, "-C", "-t", topic, "-o", "end", "-c", "2", "-q", "-f", FORMAT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: broker.metric(list_offsets) > seen, what="kcat to resolve the end offset")
        time.sleep(0.2)
        kcat(broker, "-P", "-t", topic, "-K", ":", input=b"new0:new-value-0\nnew1:new-value-1\n")
        out, err = c.communicate(timeout=KCAT_TIMEOUT_S)
    finally:
        if c.poll() is None:
            c.kill()
            c.wait()
    assert c.returncode == 0, err
    recs = parse(out)
    assert [(r["offset"], r["key"], r["value"]) for r in recs] == [(5, "new0", "new-value-0"), (6, "new1", "new-value-1")]
    # Relative to the end: the last three.
    r = kcat(broker, "-C", "-t", topic, "-o", "-3", "-e", "-q", "-f", FORMAT)
    assert [(x["offset"], x["key"]) for x in parse(r.stdout)] == [(4, "old4"), (5, "new0"), (6, "new1")]


def test_consume_from_timestamp_returns_records_at_or_after_it(broker):
    topic = create_topic(broker.bootstrap, unique("kcat-ts"), partitions=1)
    base = int(time.time() * 1000) - 60_000
    p = producer(broker.bootstrap)
    produce_all(p, topic, [(0, b"k%d" % i, b"v%d" % i, None, base + i * 1000) for i in range(10)])

    def from_ts(ts):
        return parse(kcat(broker, "-C", "-t", topic, "-o", f"s@{ts}", "-e", "-q", "-f", FORMAT).stdout)

    want = [(i, f"k{i}", f"v{i}", base + i * 1000) for i in range(5, 10)]
    # Exactly at a record's timestamp, and between two records.
    for ts in (base + 5000, base + 4001):
        assert [(r["offset"], r["key"], r["value"], r["ts"]) for r in from_ts(ts)] == want
    # Before everything: all of it; after everything: nothing.
    assert [r["offset"] for r in from_ts(base - 1)] == list(range(10))
    assert from_ts(base + 10_000) == []
