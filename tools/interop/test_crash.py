"""Stopping the broker under load. kill -9 under acks=all load: after a
restart on the same data directory, every record the broker acknowledged is
there, unchanged, at the offset the acknowledgement gave. SIGTERM under load
or with a consumer's Fetch parked: a prompt, clean exit (code 0) that keeps
everything acknowledged."""

import threading
import time

from confluent_kafka import TopicPartition

from helpers import consume, consumer, create_topic, produce_all, producer, unique, wait_until

PARTITIONS = 4
LOAD_SECONDS = 3.0


def read_all(broker, topic):
    got = consume(broker.bootstrap, topic, PARTITIONS, timeout=60)
    for part, rs in got.items():
        assert [r.offset for r in rs] == list(range(len(rs))), f"offsets of partition {part} are not dense"
    return {(r.partition, r.offset): (r.key, r.value, r.headers) for rs in got.values() for r in rs}


class Load:
    """One confluent-kafka producer thread sending acks=all records to every
    partition until stopped; `acked` maps (partition, offset) to what the
    acknowledgement was for."""

    def __init__(self, bootstrap, topic):
        self.acked = {}
        self.failed = []
        self.stop = threading.Event()
        self.loaded = threading.Event()
        self.t = threading.Thread(target=self._run, args=(bootstrap, topic))
        self.t.start()

    def _run(self, bootstrap, topic):
        # Short timeouts: once the broker is gone, what is in flight fails fast.
        p = producer(bootstrap, acks="all", linger_ms=1, message_timeout_ms=4000, socket_timeout_ms=2000,
                     reconnect_backoff_max_ms=200)

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
                p.produce(topic, key=b"key-%d" % i, value=b"value-%d-" % i + b"p" * (i % 400),
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
