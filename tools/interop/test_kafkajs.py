"""kafkajs (a pure-JavaScript client) against spindle: admin calls and a
producer, run by tools/interop/js/interop.js. kafkajs consumers need
consumer groups, which spindle does not implement yet, so the records
kafkajs wrote are read back with librdkafka (confluent-kafka)."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import consume, unique

JS_DIR = Path(__file__).resolve().parent / "js"
PARTITIONS, PER_PARTITION = 3, 10


@pytest.fixture(scope="module")
def run(broker):
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.fail("node and tools/interop/js/node_modules are required: run tools/test.sh (npm ci)")
    topic, scratch = unique("kjs"), unique("kjs-scratch")
    base = int(time.time() * 1000) - 1_000_000
    env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")
    r = subprocess.run([node, "interop.js", broker.bootstrap, topic, scratch, str(base)], cwd=JS_DIR,
                       capture_output=True, timeout=60, env=env)
    assert r.returncode == 0, f"kafkajs exited {r.returncode}:\n{r.stderr.decode(errors='replace')}"
    return {"out": json.loads(r.stdout), "topic": topic, "scratch": scratch, "base": base}


def test_admin_create_metadata_configs(run):
    out, topic = run["out"], run["topic"]
    assert out["created"] is True
    assert out["createdAgain"] is False  # TOPIC_ALREADY_EXISTS, which kafkajs reports as false
    assert topic in out["topics"]
    [md] = out["metadata"]["topics"]
    assert md["name"] == topic
    parts = sorted(md["partitions"], key=lambda p: p["partitionId"])
    assert [(p["partitionId"], p["partitionErrorCode"], p["leader"], p["replicas"], p["isr"]) for p in parts] == [
        (i, 0, 0, [0], [0]) for i in range(PARTITIONS)
    ]
    assert out["configs"] == [
        {"errorCode": 0, "name": topic, "entries": {"retention.ms": "86400000", "cleanup.policy": "delete"}}
    ]


def test_admin_delete_topic(run):
    out = run["out"]
    assert run["scratch"] not in out["topicsAfterDelete"]
    assert run["topic"] in out["topicsAfterDelete"]


def test_produce_acknowledgements(run):
    sent = run["out"]["sent"]
    for rnd, base_offset in (("plain", "0"), ("gzip", str(PER_PARTITION))):
        assert sorted((m["partition"], m["errorCode"], m["baseOffset"]) for m in sent[rnd]) == [
            (p, 0, base_offset) for p in range(PARTITIONS)
        ], rnd


def test_produced_records_read_back_by_librdkafka(broker, run):
    base = run["base"]
    got = consume(broker.bootstrap, run["topic"], PARTITIONS)
    for p in range(PARTITIONS):
        want = []
        for rnd, ts0 in (("plain", base), ("gzip", base + 100_000)):
            for i in range(PER_PARTITION):
                want.append((
                    len(want),
                    f"k-{rnd}-{p}-{i}".encode(),
                    f"v-{rnd}-{p}-{i}-".encode() + b"x" * (i * 10),
                    (("h-index", str(i).encode()), ("h-round", rnd.encode())),
                    ts0 + i * 1000,
                ))
        assert [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in got[p]] == want, p


def test_fetch_topic_offsets(run):
    out = run["out"]
    assert sorted((o["partition"], o["offset"], o["high"], o["low"]) for o in out["offsets"]) == [
        (p, "20", "20", "0") for p in range(PARTITIONS)
    ]
    # Past every timestamp: kafkajs falls back to the high watermark.
    assert sorted((o["partition"], o["offset"]) for o in out["offsetsPastEnd"]) == [
        (p, "20") for p in range(PARTITIONS)
    ]


def test_fetch_topic_offsets_by_timestamp_uncompressed(run):
    assert sorted((o["partition"], o["offset"]) for o in run["out"]["offsetsByTimestampPlain"]) == [
        (p, "5") for p in range(PARTITIONS)
    ]


# Regression: inside a compressed batch the answer was the batch's first
# offset, not the first record at or after the timestamp as Kafka answers.
def test_fetch_topic_offsets_by_timestamp_inside_compressed_batch(run):
    assert sorted((o["partition"], o["offset"]) for o in run["out"]["offsetsByTimestampGzip"]) == [
        (p, str(PER_PARTITION + 5)) for p in range(PARTITIONS)
    ]
