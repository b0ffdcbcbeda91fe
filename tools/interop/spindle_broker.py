"""A real `spindle serve` process on free loopback ports, for the interop
tests: start (waiting until a Metadata request succeeds), clean stop with
SIGTERM (exit code 0 and no panic in the log, or the test fails), kill -9,
and restart on the same data directory."""

import os
import random
import resource
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import kwire

REPO = Path(__file__).resolve().parents[2]
SPINDLE = Path(os.environ.get("SPINDLE_BIN", REPO / "target" / "release" / "spindle"))
# Start-up recovers every partition; a few seconds is plenty for test data.
READY_TIMEOUT_S = 20
# The broker drains in-flight requests for up to 10 s before closing logs.
STOP_TIMEOUT_S = 30

# The half-open-connections test holds 2000 sockets: this process needs the
# descriptors. The broker is started with the common default soft limit
# instead, as a service manager would start it, so the test also proves that
# the broker raises its own limit (and does not depend on how it is started).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft < _hard:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
BROKER_NOFILE_SOFT = min(1024, _hard)


def _broker_limits():
    resource.setrlimit(resource.RLIMIT_NOFILE, (BROKER_NOFILE_SOFT, _hard))


# Every port handed out in this test session: never handed out twice.
_HANDED_OUT = set()


def free_port():
    """A port free now, below the kernel's ephemeral range, and never handed
    out before in this session.

    - Below the ephemeral range: a broker restarted on it must not find it
      taken by some process's outgoing connection. (A killed broker's own
      listeners also outlive it by milliseconds; the broker waits for them
      at start-up, `wait_address_free` in net/src/server.rs.)
    - Never twice: ports picked together (a cluster's controller ports)
      are not bound until their brokers start, and a stopped voter's
      controller port stays in every command line while a restarting
      broker picks new Kafka and admin ports.
    """
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    while True:
        port = random.randrange(10000, low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


class Broker:
    """One `spindle serve` process on a data directory that outlives restarts."""

    def __init__(self, root: Path, extra_args=()):
        self.root = root
        self.data_dir = root / "data"
        self.extra_args = list(extra_args)
        self.proc = None
        self.logs = []
        self.port = None
        self.admin_port = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, keep_ports=False):
        """Starts the broker on new ports, or with `keep_ports` on those of
        its last start (clients that were connected reconnect to it)."""
        assert not self.running
        if not keep_ports or self.port is None:
            self.port, self.admin_port = free_port(), free_port()
            while self.admin_port == self.port:
                self.admin_port = free_port()
        log = self.root / f"broker-{len(self.logs)}.log"
        self.logs.append(log)
        cmd = [
            str(SPINDLE),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
            "--admin-listen",
            f"127.0.0.1:{self.admin_port}",
            "--cores",
            "2",
            *self.extra_args,
        ]
        env = dict(os.environ, NO_COLOR="1", SPINDLE_LOG=os.environ.get("SPINDLE_LOG", "info"))
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, preexec_fn=_broker_limits)
        self._wait_ready()
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"broker exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                md = kwire.metadata("127.0.0.1", self.port, timeout=1.0)
                if md["brokers"]:
                    return
            except (OSError, ConnectionError, AssertionError) as e:
                last = e
            time.sleep(0.05)
        self.kill9()
        pytest.fail(f"broker not ready after {READY_TIMEOUT_S} s ({last}):\n{self.log_tail()}")

    def stop(self):
        """SIGTERM; the broker must exit 0 within STOP_TIMEOUT_S, without a panic."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"broker did not stop within {STOP_TIMEOUT_S} s of SIGTERM:\n{self.log_tail()}")
        self.assert_no_panic()
        assert proc.returncode == 0, f"broker exited with {proc.returncode}:\n{self.log_tail()}"

    def kill9(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self):
        """Clean stop, then start on the same data directory."""
        self.stop()
        return self.start()

    def log_text(self):
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def assert_no_panic(self):
        text = self.log_text()
        assert "panicked" not in text, f"broker log shows a panic:\n{self.log_tail(80)}"

    def http_get(self, path, timeout=5):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()

    def metrics(self):
        """Prometheus samples as {'name{labels}': value}."""
        status, text = self.http_get("/metrics")
        assert status == 200
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[key] = float(value)
        return samples

    def metric(self, key, default=0.0):
        return self.metrics().get(key, default)
