"""What the world can send down a raw socket: garbage, truncated and
oversized frames, unknown APIs and versions, thousands of idle or half-sent
connections. Each bad connection is closed; the broker keeps serving other
clients, and data acknowledged before is intact afterwards."""

import os
import random
import signal
import socket
import struct
import subprocess
import threading

import pytest
from confluent_kafka import KafkaError, TopicPartition

import kwire
from helpers import admin, consume, consumer, create_topic, produce_all, producer, unique, wait_until
from spindle_broker import SPINDLE, Broker, free_port

SOCKET_REQUEST_MAX_BYTES = 1024 * 1024
CLOSE_TIMEOUT_S = 5
HALF_OPEN_CONNECTIONS = 2000


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("robust"),
               ["--socket-request-max-bytes", str(SOCKET_REQUEST_MAX_BYTES)]).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def seeded(broker):
    """Records acknowledged before any abuse; checked after each test."""
    topic = create_topic(broker.bootstrap, unique("seed"), partitions=2)
    recs = [(i % 2, b"key-%d" % i, b"value-%d" % i * 10, [("i", b"%d" % i)], 1_700_000_000_000 + i) for i in range(200)]
    reports = produce_all(producer(broker.bootstrap, acks="all"), topic, recs)
    acked = {(m.partition(), m.offset()): (m.key(), m.value()) for m in reports}
    assert len(acked) == 200
    return topic, acked


def assert_serving(broker, seeded):
    """Another client still gets through, and acknowledged data is unchanged."""
    status, body = broker.http_get("/healthz")
    assert (status, body) == (200, "ok\n")
    topic, acked = seeded
    extra = unique("after")
    create_topic(broker.bootstrap, extra)
    reports = produce_all(producer(broker.bootstrap, acks="all"), extra, [(0, b"k", b"still serving", None, None)])
    assert reports[0].offset() == 0
    got = consume(broker.bootstrap, topic, 2, start={0: 0, 1: 0})
    assert {(r.partition, r.offset): (r.key, r.value) for rs in got.values() for r in rs} == acked


def connect(broker):
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=CLOSE_TIMEOUT_S)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send_ignoring_reset(s, data):
    """The broker may close while we are still sending; that is fine."""
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def assert_closed_by_broker(s):
    """The broker closes the connection without answering (anything already
    answered must have been read by the caller)."""
    s.settimeout(CLOSE_TIMEOUT_S)
    try:
        data = s.recv(1 << 16)
    except ConnectionResetError:
        return
    except socket.timeout:
        pytest.fail(f"connection still open after {CLOSE_TIMEOUT_S} s")
    assert data == b"", f"broker answered instead of closing: {data[:64]!r}"


rng = random.Random(20261122)
GARBAGE = {
    "http request": b"GET / HTTP/1.1\r\nHost: spindle\r\n\r\n",
    "negative frame size": struct.pack(">i", -16) + b"\x00" * 16,
    "zero frame size": struct.pack(">i", 0),
    "frame shorter than a header": struct.pack(">i", 3) + b"\x00\x03\x00",
    "random bytes in a plausible frame": struct.pack(">i", 64) + b"\x7f\x7f" + bytes(rng.randrange(256) for _ in range(62)),
    "unknown api key": kwire.request(999, 0, 5),
    # An inter-broker API a single-node broker has no use for.
    "api not implemented (LeaderAndIsr)": kwire.request(4, 0, 5, b"\x00" * 40),
    "unsupported version of Metadata": kwire.request(kwire.API_METADATA, 99, 5, struct.pack(">i", -1)),
    # Metadata v1 claiming 5 topic names and carrying none.
    "truncated request body": kwire.request(kwire.API_METADATA, 1, 5, struct.pack(">i", 5)),
    "string length past the frame": kwire.request(kwire.API_METADATA, 1, 5, struct.pack(">ih", 1, 5000) + b"abc"),
}


@pytest.mark.parametrize("case", list(GARBAGE))
def test_bad_frame_closes_only_that_connection(broker, seeded, case):
    rejected = broker.metric("spindle_frames_rejected_total")
    bystander = connect(broker)  # an idle, well-behaved connection
    with connect(broker) as s:
        # A good request pipelined ahead of the bad frame is answered first.
        send_ignoring_reset(s, kwire.request(kwire.API_VERSIONS, 0, 1) + GARBAGE[case])
        cid, body = kwire.recv_frame(s)
        assert cid == 1 and kwire.parse_api_versions_v0(body)[0] == 0
        assert_closed_by_broker(s)
    wait_until(lambda: broker.metric("spindle_frames_rejected_total") > rejected, what="frames_rejected to count it")
    # The bystander's connection is unaffected.
    with bystander:
        err, keys = kwire.api_versions(bystander, correlation_id=2)
        assert err == 0 and kwire.API_VERSIONS in keys
    assert_serving(broker, seeded)


def test_truncated_frame_then_eof_closes_connection(broker, seeded):
    with connect(broker) as s:
        frame = kwire.request(kwire.API_METADATA, 1, 9, struct.pack(">i", -1))
        s.sendall(frame[: len(frame) - 3])
        s.shutdown(socket.SHUT_WR)
        assert_closed_by_broker(s)
    assert_serving(broker, seeded)


def test_oversized_frame_closes_connection_without_reading_it(broker, seeded):
    rejected = broker.metric("spindle_frames_rejected_total")
    with connect(broker) as s:
        # Only the size prefix and a little of the body: the broker must not
        # wait for (or buffer) the rest before refusing.
        send_ignoring_reset(s, struct.pack(">i", SOCKET_REQUEST_MAX_BYTES + 1) + b"\x00\x00\x00\x03" + b"\x00" * 1000)
        assert_closed_by_broker(s)
    assert broker.metric("spindle_frames_rejected_total") > rejected
    with connect(broker) as s:
        send_ignoring_reset(s, struct.pack(">i", 0x7FFFFFFF))
        assert_closed_by_broker(s)
    assert_serving(broker, seeded)


def test_request_just_under_socket_request_max_bytes_is_served(broker):
    topic = create_topic(broker.bootstrap, unique("big"))
    # The produce request carries ~200 bytes besides the value.
    value = random.Random(1).randbytes(SOCKET_REQUEST_MAX_BYTES - 1024)
    p = producer(broker.bootstrap, linger_ms=0, compression_type="none", message_max_bytes=2_000_000)
    reports = produce_all(p, topic, [(0, b"big", value, None, None)])
    assert reports[0].offset() == 0
    [rec] = consume(broker.bootstrap, topic, 1)[0]
    assert (rec.key, rec.value) == (b"big", value)


def test_api_versions_unsupported_version_gets_error_35_in_v0_body(broker):
    with connect(broker) as s:
        # An ApiVersions request the broker cannot parse: it answers in the
        # v0 format with UNSUPPORTED_VERSION and its ranges, so the client
        # can retry with a version from them.
        s.sendall(kwire.request(kwire.API_VERSIONS, 99, 42, b"\x00\x01\x02 future fields"))
        cid, body = kwire.recv_frame(s)
        assert cid == 42
        err, keys = kwire.parse_api_versions_v0(body)
        assert err == 35
        assert keys[kwire.API_VERSIONS] == (0, 4)
        assert keys[kwire.API_METADATA][0] == 0
        # The connection stays usable for the retry.
        err, keys2 = kwire.api_versions(s, version=0, correlation_id=43)
        assert err == 0 and keys2 == keys


def test_half_open_connections_do_not_take_the_broker_down(broker, seeded):
    socks = []
    try:
        for i in range(HALF_OPEN_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
            # A third send nothing, a third half a size prefix, a third a
            # size prefix and part of a header.
            if i % 3 == 1:
                s.sendall(b"\x00\x00")
            elif i % 3 == 2:
                s.sendall(struct.pack(">i", 100) + b"\x00\x03\x00")
            socks.append(s)
        wait_until(lambda: broker.metric("spindle_connections_open") >= HALF_OPEN_CONNECTIONS, timeout=20,
                   what=f"{HALF_OPEN_CONNECTIONS} connections accepted")
        assert_serving(broker, seeded)
        # A raw client also gets a prompt answer.
        with connect(broker) as s:
            err, _ = kwire.api_versions(s)
            assert err == 0
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: broker.metric("spindle_connections_open") < 10, timeout=20,
               what="the broker to notice the closed connections")
    assert_serving(broker, seeded)


def test_delete_topic_under_produce_and_fetch(broker, seeded):
    """Deleting a topic while a producer writes to it and a consumer
    long-polls it: both get errors, not a hung or crashed broker, and a
    topic created again under the same name starts empty."""
    topic = create_topic(broker.bootstrap, unique("doomed"), partitions=4)
    produce_all(producer(broker.bootstrap), topic, [(i % 4, b"k", b"old-%d" % i, None, None) for i in range(100)])
    stop = threading.Event()
    produced_errors = []

    def produce_loop():
        p = producer(broker.bootstrap, acks="all", message_timeout_ms=3000, linger_ms=1)
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, b"during-%d" % i, partition=i % 4,
                          on_delivery=lambda e, m: e is not None and produced_errors.append(e.code()))
                i += 1
            except BufferError:
                pass
            p.poll(0.001)
        p.flush(10)

    c = consumer(broker.bootstrap, fetch_wait_max_ms=2000)
    c.assign([TopicPartition(topic, p, 0) for p in range(4)])
    t = threading.Thread(target=produce_loop)
    t.start()
    try:
        for _ in range(10):
            c.poll(0.1)
        a = admin(broker.bootstrap)
        a.delete_topics([topic], request_timeout=10, operation_timeout=10)[topic].result(timeout=15)
        for _ in range(10):
            c.poll(0.1)
    finally:
        stop.set()
        t.join(30)
        c.close()
    assert not t.is_alive()
    # Regressions: every core used to remove every partition directory,
    # racing with the owner closing its log in it, and an auto-create of the
    # same name could open the directories being deleted. No partition of
    # the topic (or of its successor) may fail to close, open or write.
    errors = [line for line in broker.log_text().splitlines()
              if (" ERROR " in line or " WARN " in line) and topic in line]
    assert not errors, "\n".join(errors[:5])
    # Whatever failed, failed with a code a client acts on (not a storage error).
    assert KafkaError.KAFKA_STORAGE_ERROR not in produced_errors, produced_errors[:10]
    # The producer may have auto-created the topic again right after the
    # delete: delete it (if there) and create it fresh.
    a = admin(broker.bootstrap)
    if topic in a.list_topics(timeout=10).topics:
        a.delete_topics([topic], request_timeout=10)[topic].result(timeout=15)
    create_topic(broker.bootstrap, topic, partitions=2)
    assert consume(broker.bootstrap, topic, 2) == {0: [], 1: []}
    assert_serving(broker, seeded)


def test_a_log_destination_that_is_full_does_not_stop_the_broker(tmp_path):
    """Log lines that cannot be written (stderr on a full disk; here
    /dev/full) are dropped. tracing's default reported each failure with
    eprint!, which panicked on the same error and took the broker down at
    its first log line."""
    port, admin_port = free_port(), free_port()
    cmd = [str(SPINDLE), "serve", "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}",
           "--admin-listen", f"127.0.0.1:{admin_port}", "--cores", "2"]
    with open("/dev/full", "wb") as full:
        proc = subprocess.Popen(cmd, stdout=full, stderr=full)
    _serves_a_record_then_stops(proc, port, "devfull")


def _serves_a_record_then_stops(proc, port, prefix):
    """`proc`, a `spindle serve` listening on `port`, comes up, takes a
    produce and serves it back, and stops with 0 on SIGTERM."""
    try:
        bootstrap = f"127.0.0.1:{port}"
        wait_until(lambda: proc.poll() is not None or _answers_metadata(port), what="the broker to serve")
        assert proc.poll() is None, f"broker exited with {proc.returncode}"
        topic = create_topic(bootstrap, unique(prefix))
        produce_all(producer(bootstrap, acks=1), topic, [(0, b"k", b"v", None, None)])
        got = consume(bootstrap, topic, 1)
        assert [(r.key, r.value) for r in got[0]] == [(b"k", b"v")]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _fifo():
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))


def test_sched_fifo_is_refused_with_a_clear_error(tmp_path):
    """Under SCHED_FIFO the broker never finished starting (its executor
    busy-polled a disk read that an io_uring worker of the same priority
    had to complete): it now refuses at once, says why, and leaves the data
    directory untouched. SCHED_RR still starts and serves."""
    try:
        subprocess.run(["true"], preexec_fn=_fifo, check=True)
    except (subprocess.SubprocessError, PermissionError, OSError) as e:
        pytest.skip(f"cannot set SCHED_FIFO here: {e}")
    data = tmp_path / "data"
    port, admin_port = free_port(), free_port()
    cmd = [str(SPINDLE), "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
           "--admin-listen", f"127.0.0.1:{admin_port}", "--cores", "1"]
    r = subprocess.run(cmd, preexec_fn=_fifo, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "cannot run under SCHED_FIFO" in r.stderr and "SCHED_RR" in r.stderr, r.stderr[-2000:]
    assert not data.exists()

    def _rr():
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))

    proc = subprocess.Popen(cmd, preexec_fn=_rr, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _serves_a_record_then_stops(proc, port, "rr")


def _answers_metadata(port):
    try:
        return bool(kwire.metadata("127.0.0.1", port, timeout=1.0)["brokers"])
    except (OSError, ConnectionError, AssertionError):
        return False
