"""A few Kafka wire-protocol messages written by hand, for the raw-socket
robustness tests and for the readiness probe of the broker fixture.

Deliberately tiny: request header v1 (api key, version, correlation id,
client id), ApiVersions v0 and Metadata v1. Anything a real client does is
tested with the real clients, not with this.
"""

import socket
import struct

API_METADATA = 3
API_VERSIONS = 18

CLIENT_ID = "spindle-interop"


def kstring(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request(api_key, version, correlation_id, body=b"", client_id=CLIENT_ID):
    """One request frame: size prefix, header v1, body."""
    payload = struct.pack(">hhi", api_key, version, correlation_id) + kstring(client_id) + body
    return struct.pack(">i", len(payload)) + payload


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock):
    """Reads one response frame; returns (correlation_id, body)."""
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    data = recv_exact(sock, size)
    (correlation_id,) = struct.unpack(">i", data[:4])
    return correlation_id, data[4:]


class Reader:
    def __init__(self, data):
        self.data = data
        self.at = 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.at : self.at + n].decode()
        self.at += n
        return s

    def array(self, item):
        n = self.take(">i")
        return [item(self) for _ in range(max(n, 0))]


def parse_api_versions_v0(body):
    """(error_code, {api_key: (min, max)})"""
    r = Reader(body)
    error = r.take(">h")
    keys = r.array(lambda r: r.take(">hhh"))
    return error, {k: (lo, hi) for k, lo, hi in keys}


def parse_metadata_v1(body):
    r = Reader(body)
    brokers = r.array(lambda r: (r.take(">i"), r.string(), r.take(">i"), r.string()))
    controller = r.take(">i")

    def partition(r):
        error, index, leader = r.take(">hii")
        replicas = r.array(lambda r: r.take(">i"))
        isr = r.array(lambda r: r.take(">i"))
        return {"error": error, "index": index, "leader": leader, "replicas": replicas, "isr": isr}

    def topic(r):
        error = r.take(">h")
        name = r.string()
        internal = r.take(">?")
        return {"error": error, "name": name, "internal": internal, "partitions": r.array(partition)}

    topics = r.array(topic)
    return {"brokers": brokers, "controller": controller, "topics": {t["name"]: t for t in topics}}


def metadata(host, port, timeout=2.0):
    """Metadata v1 for every topic, over a fresh connection."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request(API_METADATA, 1, 7, struct.pack(">i", -1)))
        cid, body = recv_frame(s)
        assert cid == 7, f"correlation id {cid} != 7"
        return parse_metadata_v1(body)


def api_versions(sock, version=0, correlation_id=1):
    sock.sendall(request(API_VERSIONS, version, correlation_id))
    cid, body = recv_frame(sock)
    assert cid == correlation_id, f"correlation id {cid} != {correlation_id}"
    return parse_api_versions_v0(body)
