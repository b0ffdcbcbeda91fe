#!/usr/bin/env python3
"""Holds N idle client connections to a running `spindle serve` and reports
the broker's resident memory before and after, plus whether it still serves.

usage: idle-connections.py --pid PID --bootstrap HOST:PORT [--connections 10000]

Each connection completes the TCP handshake and then sends nothing, the
cheapest thing a client (or an attacker) can do to hold broker resources.
Half of them then send a partial request header, so both the idle and the
half-open read paths are held. The script raises its own RLIMIT_NOFILE."""

import argparse
import resource
import socket
import struct
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def api_versions_ok(host, port):
    s = socket.create_connection((host, port), timeout=5)
    try:
        body = struct.pack(">hhi", 18, 0, 1) + struct.pack(">h", 4) + b"idle"
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", s.recv(4))[0]
        data = b""
        while len(data) < size:
            data += s.recv(size - len(data))
        return struct.unpack(">ih", data[:6])[1] == 0
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--connections", type=int, default=10000)
    a = ap.parse_args()
    host, port = a.bootstrap.rsplit(":", 1)
    port = int(port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    before = rss_kib(a.pid)
    socks = []
    t0 = time.monotonic()
    for i in range(a.connections):
        s = socket.socket()
        s.connect((host, port))
        if i % 2:
            s.send(b"\x00\x00")  # half a length prefix: a half-open request
        socks.append(s)
    opened = time.monotonic() - t0
    time.sleep(2)
    held = rss_kib(a.pid)
    ok = api_versions_ok(host, port)
    for s in socks:
        s.close()
    time.sleep(2)
    after = rss_kib(a.pid)
    per_conn = (held - before) * 1024 / max(1, a.connections)
    print(f"connections: {a.connections} opened in {opened:.1f} s")
    print(f"broker RSS: before {before / 1024:.1f} MiB, holding {held / 1024:.1f} MiB, after close {after / 1024:.1f} MiB")
    print(f"per connection: {per_conn:.0f} bytes")
    print(f"still serving while holding them: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
