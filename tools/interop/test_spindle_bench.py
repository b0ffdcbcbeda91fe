"""spindle-bench, the bundled load generator, against a real broker: what it
reports matches what the broker stored; bad input gets a one-line error; an
interrupted run still writes its results."""

import json
import signal
import subprocess
import time

from confluent_kafka import Consumer, TopicPartition

from spindle_broker import REPO

BENCH = REPO / "target" / "release" / "spindle-bench"


def log_end(bootstrap, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-check"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        c.close()


def test_produce_run_reports_what_the_broker_stored(broker, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(
        [str(BENCH), "produce", "--bootstrap", broker.bootstrap, "--topic", "bench-a", "--partitions", "4", "--records", "20000",
         "--record-size", "100..300", "--keys", "zipf:100:1.1", "--acks", "all", "--duration", "30s", "--warmup", "0s", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["produced"]["records"] == 20000 and s["produced"]["errors"] == 0
    assert s["produce_latency"]["samples"] == 20000
    assert log_end(broker.bootstrap, "bench-a", 4) == 20000
    for f in ["produce.hgrm", "latency.svg", "throughput.svg"]:
        assert (out / f).stat().st_size > 100, f
    assert "Percentile" in (out / "produce.hgrm").read_text()


def test_e2e_run_consumes_every_record_it_produced(broker, tmp_path):
    out = tmp_path / "e2e"
    r = subprocess.run(
        [str(BENCH), "e2e", "--bootstrap", broker.bootstrap, "--topic", "bench-e2e", "--partitions", "3", "--rate", "5000",
         "--duration", "4s", "--warmup", "1s", "--consumers", "2", "--compression", "lz4", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["produced"]["records"] > 15000
    assert s["consumed"]["records"] == s["produced"]["records"], s
    assert s["e2e_latency"]["samples"] > 10000
    assert s["e2e_latency"]["p50_ms"] < 1000


def test_bad_flag_and_unreachable_broker_fail_with_one_line_and_no_panic(tmp_path):
    bad = subprocess.run([str(BENCH), "produce", "--acks", "7"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "acks" in bad.stderr and "panicked" not in bad.stderr
    gone = subprocess.run(
        [str(BENCH), "produce", "--bootstrap", "127.0.0.1:1", "--duration", "2s", "--warmup", "0s"], capture_output=True, text=True, timeout=30
    )
    assert gone.returncode != 0
    assert "panicked" not in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1, gone.stderr


def test_interrupted_run_still_prints_and_writes_what_it_measured(broker, tmp_path):
    out = tmp_path / "int"
    p = subprocess.Popen(
        [str(BENCH), "produce", "--bootstrap", broker.bootstrap, "--topic", "bench-int", "--partitions", "2", "--rate", "2000",
         "--duration", "60s", "--warmup", "0s", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert "interrupted" in stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["interrupted"] is True and s["produced"]["records"] > 1000


def test_compare_runs_both_brokers_and_prints_ratios(broker_factory, tmp_path):
    a, b = broker_factory(), broker_factory()
    r = subprocess.run(
        [str(BENCH), "compare", "--bootstrap", a.bootstrap, "--against", b.bootstrap, "--rounds", "1", "--consumers", "1",
         "--topic", "cmp", "--partitions", "2", "--rate", "2000", "--duration", "3s", "--warmup", "1s", "--out", str(tmp_path / "cmp")],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    table = r.stdout[r.stdout.index("median of 1 rounds"):]
    rows = {l.split()[0] + " " + l.split()[1]: l.split() for l in table.splitlines()[2:] if l.strip()}
    assert float(rows["produce rec/s"][2]) > 1000 and float(rows["produce rec/s"][3]) > 1000, table
    assert rows["produce rec/s"][4] != "-", "a B/A ratio is printed"
    for side in ["a-round1", "b-round1"]:
        assert (tmp_path / "cmp" / side / "summary.json").exists()
    assert log_end(a.bootstrap, "cmp", 2) > 2000 and log_end(b.bootstrap, "cmp", 2) > 2000, "both brokers got the load"
