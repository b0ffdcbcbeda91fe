"""Stopping the broker under load. kill -9 under acks=all and acks=1 load:
after a restart on the same data directory, every record the broker
acknowledged is there, unchanged, at the offset the acknowledgement gave.
SIGTERM under load or with a consumer's Fetch parked: a prompt, clean exit
(code 0) that keeps everything acknowledged. The ack journal: acks=1
acknowledged before a write that then fails (a full disk) is appended back
at the next start; its files come and go with the broker."""

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from confluent_kafka import TopicPartition

from helpers import consume, consumer, create_topic, produce_all, producer, unique, wait_until
from spindle_broker import Broker

PARTITIONS = 4
LOAD_SECONDS = 3.0


def read_all(broker, topic):
    got = consume(broker.bootstrap, topic, PARTITIONS, timeout=60)
    for part, rs in got.items():
        assert [r.offset for r in rs] == list(range(len(rs))), f"offsets of partition {part} are not dense"
    return {(r.partition, r.offset): (r.key, r.value, r.headers) for rs in got.values() for r in rs}


class Load:
    """One confluent-kafka producer thread sending records to every
    partition until stopped; `acked` maps (partition, offset) to what the
    acknowledgement was for. acks=all by default; `pad(i)` is the filler
    after record i's value prefix; `conf` adds producer settings."""

    def __init__(self, bootstrap, topic, acks="all", pad=lambda i: b"p" * (i % 400), **conf):
        self.acked = {}
        self.failed = []
        self.stop = threading.Event()
        self.loaded = threading.Event()
        self.pad = pad
        self.t = threading.Thread(target=self._run, args=(bootstrap, topic, acks, conf))
        self.t.start()

    def _run(self, bootstrap, topic, acks, conf):
        # Short timeouts: once the broker is gone, what is in flight fails fast.
        conf = {"linger_ms": 1, **conf}
        p = producer(bootstrap, acks=acks, message_timeout_ms=4000, socket_timeout_ms=2000,
                     reconnect_backoff_max_ms=200, **conf)

        def cb(err, m):
            if err is None:
                # Delivery reports carry no headers: rebuild the ones sent.
                i = m.key().split(b"-")[1]
                self.acked[(m.partition(), m.offset())] = (m.key(), m.value(), (("i", i),))
            else:
                self.failed.append(err)

        i = 0
        while not self.stop.is_set():
            try:
                p.produce(topic, key=b"key-%d" % i, value=b"value-%d-" % i + self.pad(i),
                          headers=[("i", b"%d" % i)], partition=i % PARTITIONS, on_delivery=cb)
                i += 1
            except BufferError:
                p.poll(0.01)
            p.poll(0)
            if len(self.acked) > 1000:
                self.loaded.set()
        p.flush(10)

    def finish(self):
        self.stop.set()
        self.t.join(30)
        assert not self.t.is_alive()
        return dict(self.acked)


def assert_all_present(snapshot, on_disk):
    missing = [k for k in snapshot if k not in on_disk]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    changed = [k for k, v in snapshot.items() if on_disk[k] != v]
    assert not changed, (f"{len(changed)} acknowledged records changed, e.g. "
                         f"{[(k, snapshot[k], on_disk[k]) for k in changed[:2]]}")


def test_kill_9_under_acks_all_load_loses_no_acknowledged_record(broker_factory):
    b = broker_factory()
    topic = create_topic(b.bootstrap, unique("crash"), partitions=PARTITIONS)
    load = Load(b.bootstrap, topic)
    try:
        time.sleep(LOAD_SECONDS)
        assert load.loaded.wait(10), f"only {len(load.acked)} records acknowledged under load"
        b.kill9()
        time.sleep(0.5)
    finally:
        snapshot = load.finish()
    assert len(snapshot) > 1000

    b.start()
    on_disk = read_all(b, topic)
    assert_all_present(snapshot, on_disk)

    # The log takes writes after recovery, at the next offsets.
    ends = {part: sum(1 for (p, _) in on_disk if p == part) for part in range(PARTITIONS)}
    reports = produce_all(producer(b.bootstrap, acks="all"), topic,
                          [(part, b"after", b"after-%d" % part, None, None) for part in range(PARTITIONS)])
    assert {m.partition(): m.offset() for m in reports} == ends

    # A clean restart keeps all of it.
    b.restart()
    again = read_all(b, topic)
    assert {k: v for k, v in again.items() if k in on_disk} == on_disk
    assert {k: v[1] for k, v in again.items() if k not in on_disk} == {
        (part, ends[part]): b"after-%d" % part for part in range(PARTITIONS)
    }


def test_sigterm_under_load_exits_cleanly_and_keeps_every_acknowledged_record(broker_factory):
    b = broker_factory()
    topic = create_topic(b.bootstrap, unique("term"), partitions=PARTITIONS)
    load = Load(b.bootstrap, topic)
    try:
        assert load.loaded.wait(10), f"only {len(load.acked)} records acknowledged under load"
        started = time.monotonic()
        b.stop()  # SIGTERM: exit code 0, no panic
        took = time.monotonic() - started
    finally:
        snapshot = load.finish()
    # Producers' requests drain quickly; nothing should hold shutdown up.
    assert took < 5, f"shutdown took {took:.1f} s"
    b.start()
    assert_all_present(snapshot, read_all(b, topic))


def test_sigterm_is_not_held_up_by_a_long_poll_fetch(broker_factory):
    b = broker_factory()
    topic = create_topic(b.bootstrap, unique("longpoll"))
    c = consumer(b.bootstrap, fetch_wait_max_ms=25_000, fetch_min_bytes=1_000_000)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        # The partition is empty: the consumer's Fetch parks on the broker
        # for up to 25 s.
        wait_until(lambda: b.metric("spindle_connections_open") >= 1, what="the consumer to connect")
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            c.poll(0.1)
        started = time.monotonic()
        b.stop()
        took = time.monotonic() - started
    finally:
        c.close()
    assert took < 5, f"shutdown waited {took:.1f} s for a parked Fetch"


def replayed_records(text):
    """Records the broker appended back from its ack journals, per its log."""
    return sum(int(m) for m in re.findall(r"replayed from the ack journal.*?records=(\d+)", text))


def test_kill_9_under_acks_1_load_loses_no_acknowledged_record(broker_factory):
    """acks=1 is acknowledged once the batches are in the ack journal (on
    /dev/shm), before their disk writes. After kill -9 under that load,
    every acknowledged record is there (written, or appended back from the
    journal at start-up)."""
    b = broker_factory()
    topic = create_topic(b.bootstrap, unique("crash1"), partitions=PARTITIONS)
    # acks=1 with larger records, so writes are in flight at the kill.
    load = Load(b.bootstrap, topic, acks=1, pad=lambda i: b"q" * (2000 + i % 3000), linger_ms=2,
                batch_size=256 * 1024)
    try:
        assert load.loaded.wait(20), f"only {len(load.acked)} records acknowledged under load"
        time.sleep(1.0)
        b.kill9()
    finally:
        acked = load.finish()
    b.start()
    assert_all_present(acked, read_all(b, topic))
    # The old run's journals are gone once replayed; this run's two remain.
    pid = b.proc.pid
    assert len([p for p in Path("/dev/shm").glob(f"spindle-ack-*-{pid}-*.journal")]) == 2


@pytest.fixture
def small_disk(tmp_path):
    """A 96 MiB ext4 file system on a loop device, mounted for the test."""
    img, mnt = tmp_path / "disk.img", tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "96M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", str(img)], check=True)
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_write_failing_after_an_acks_1_ack_loses_nothing_once_space_is_back(small_disk):
    """The disk fills while acks=1 records are acknowledged from the ack
    journal: the write of some of them fails, and the partition refuses
    further writes (KAFKA_STORAGE_ERROR). Restarted once there is space
    again, the broker appends back from the journal what it acknowledged and
    could not write, so nothing acknowledged is lost."""
    b = Broker(small_disk.parent / "broker")
    b.root.mkdir()
    b.data_dir = small_disk / "data"
    b.start()
    try:
        topic = create_topic(b.bootstrap, unique("full"), partitions=2)
        # Leave about 24 MiB free.
        free = shutil.disk_usage(small_disk).free
        filler = small_disk / "filler"
        subprocess.run(["fallocate", "-l", str(free - 24 * 1024 * 1024), str(filler)], check=True)
        acked, failed = {}, []
        p = producer(b.bootstrap, acks=1, linger_ms=5, batch_size=256 * 1024, message_timeout_ms=5000,
                     retries=0)

        def cb(err, m):
            if err is None:
                acked[(m.partition(), m.offset())] = (m.key(), m.value(), None)
            else:
                failed.append(err)

        deadline = time.monotonic() + 60
        i = 0
        while not failed and time.monotonic() < deadline:
            try:
                p.produce(topic, key=b"k%d" % i, value=b"v%d-" % i + b"f" * 4000, partition=i % 2, on_delivery=cb)
                i += 1
            except BufferError:
                p.poll(0.01)
            p.poll(0)
        p.flush(10)
        assert failed, f"the disk never filled ({len(acked)} records acknowledged)"
        assert any(e.code() == KafkaError.KAFKA_STORAGE_ERROR for e in failed), failed[:3]
        b.kill9()
        filler.unlink()
        b.start()
        # Core 0 may still be opening (and replaying) its partitions when
        # core 1 already answers Metadata.
        wait_until(lambda: "ack journals of the earlier run replayed" in b.log_text(), what="the replay")
        assert replayed_records(b.log_text()) > 0, "nothing acknowledged was left unwritten"
        got = consume(b.bootstrap, topic, 2, timeout=60)
        on_disk = {(r.partition, r.offset): (r.key, r.value, None) for rs in got.values() for r in rs}
        assert_all_present(acked, on_disk)
        # The partitions take writes again.
        produce_all(producer(b.bootstrap, acks=1), topic, [(0, b"after", b"after", None, None)])
        b.stop()
    finally:
        b.kill9()


def journal_files(d):
    return sorted(p.name for p in Path(d).glob("spindle-ack-*.journal"))


def test_ack_journal_files_come_and_go_with_the_broker(broker_factory, tmp_path):
    """One journal per core while the broker runs; a clean stop removes them;
    after kill -9 they stay until the next start has replayed them, even if
    that start names another journal directory or turns journaling off."""
    jdir = tmp_path / "journals"
    jdir.mkdir()
    b = broker_factory("--ack-journal-dir", str(jdir))
    assert len(journal_files(jdir)) == 2, "one per core"
    topic = create_topic(b.bootstrap, unique("jfiles"), partitions=PARTITIONS)
    sent = [(i % PARTITIONS, b"k%d" % i, b"v%d" % i, None, None) for i in range(200)]
    produce_all(producer(b.bootstrap, acks=1), topic, sent)
    assert b.metric("spindle_ack_journal_appends_total") > 0, "acks=1 went through the journal"
    b.stop()
    assert journal_files(jdir) == [], "a clean stop leaves no journal"

    b.start()
    produce_all(producer(b.bootstrap, acks=1), topic, sent)
    b.kill9()
    left = journal_files(jdir)
    assert len(left) == 2, "kill -9 leaves the journals"
    # Journaling off at the next start: the data directory remembers where
    # the last run kept them, and they are replayed (or found written) and go.
    b.extra_args = ["--ack-journal-dir", "off"]
    b.start()
    wait_until(lambda: journal_files(jdir) == [], what="the replayed journals to go")
    got = read_all(b, topic)
    assert len(got) == 400
    b.stop()
    assert journal_files(jdir) == []


def test_a_journal_directory_too_small_leaves_the_broker_without_journals(broker_factory, tmp_path):
    """A tmpfs too small for a 16 MiB journal (a container's /dev/shm can
    be): each core logs that it has none and acknowledges once written,
    instead of failing later with SIGBUS on a page the tmpfs cannot give."""
    shm = tmp_path / "shm"
    shm.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(shm)], check=True)
    try:
        b = broker_factory("--ack-journal-dir", str(shm))
        assert journal_files(shm) == []
        assert b.log_text().count("no ack journal") == 2
        topic = create_topic(b.bootstrap, unique("smallshm"), partitions=PARTITIONS)
        sent = [(i % PARTITIONS, b"k%d" % i, b"v%d" % i, None, None) for i in range(100)]
        produce_all(producer(b.bootstrap, acks=1), topic, sent)
        assert len(read_all(b, topic)) == 100
        assert b.metric("spindle_ack_journal_appends_total") == 0
        b.stop()
    finally:
        subprocess.run(["umount", "-l", str(shm)], check=False)
