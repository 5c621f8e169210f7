#!/usr/bin/env python3
"""Readiness probe for the test brokers that scripts/kafka starts.

Python standard library only: speaks just enough of the Kafka wire protocol
(ApiVersions v0, Metadata v4, FindCoordinator v1, InitProducerId v1, all
non-flexible versions that Kafka 4.x still serves) to tell when a cluster
can be used by the tests, so that the script needs no Kafka client.

  kafka_probe.py ready    --bootstrap H:P,H:P,... --brokers N [--txn] [--in-sync NODE]
                          [--pids PID,...] [--timeout SECS]
  kafka_probe.py metadata --bootstrap H:P[,...]       # brokers, topics, ISR

`ready` returns 0 once every address answers Metadata listing at least N
live brokers, and with --txn once the group and transaction coordinators are
found (which creates __consumer_offsets and __transaction_state) and
InitProducerId for a transactional id succeeds; with --in-sync NODE once
NODE is in the in-sync replicas of every partition it holds a replica of. It returns 3 at once if a PID of --pids
dies, 1 when the timeout passes. Progress goes to stderr.
"""

import argparse
import os
import socket
import struct
import sys
import time

API_METADATA, API_FIND_COORDINATOR, API_INIT_PRODUCER_ID, API_VERSIONS = 3, 10, 22, 18
RETRIABLE = {
    5: "LEADER_NOT_AVAILABLE",
    6: "NOT_LEADER_OR_FOLLOWER",
    7: "REQUEST_TIMED_OUT",
    14: "COORDINATOR_LOAD_IN_PROGRESS",
    15: "COORDINATOR_NOT_AVAILABLE",
    16: "NOT_COORDINATOR",
    19: "NOT_ENOUGH_REPLICAS",
    20: "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    51: "CONCURRENT_TRANSACTIONS",
}
_corr = 0


class Reader:
    def __init__(self, b):
        self.b, self.i = b, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.i)
        self.i += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.b[self.i : self.i + n].decode()
        self.i += n
        return s

    def array(self, item):
        n = self.take(">i")
        return [item() for _ in range(max(n, 0))]


def _string(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _recv(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return buf


def request(addr, api_key, version, body, timeout=3.0):
    """One request on a fresh connection; returns a Reader past the header."""
    global _corr
    _corr += 1
    host, port = addr.rsplit(":", 1)
    head = struct.pack(">hhi", api_key, version, _corr) + _string("weir-kafka-probe")
    msg = head + body
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", _recv(s, 4))[0]
        r = Reader(_recv(s, size))
    if r.take(">i") != _corr:
        raise ConnectionError("correlation id mismatch")
    return r


def api_versions(addr):
    r = request(addr, API_VERSIONS, 0, b"")
    err = r.take(">h")
    if err:
        raise ConnectionError(f"ApiVersions error {err}")
    return {k: (lo, hi) for k, lo, hi in r.array(lambda: r.take(">hhh"))}


def check_versions(addr):
    """Fails clearly if a later Kafka drops the versions spoken here."""
    have = api_versions(addr)
    for key, ver, name in (
        (API_METADATA, 4, "Metadata"),
        (API_FIND_COORDINATOR, 1, "FindCoordinator"),
        (API_INIT_PRODUCER_ID, 1, "InitProducerId"),
    ):
        lo, hi = have.get(key, (1, 0))
        if not lo <= ver <= hi:
            sys.exit(f"kafka_probe: broker at {addr} serves {name} v{lo}-v{hi}, not v{ver}; update scripts/kafka_probe.py")


def metadata(addr):
    # Metadata v4: all topics (null array), no auto-creation.
    r = request(addr, API_METADATA, 4, struct.pack(">ib", -1, 0))
    r.take(">i")  # throttle_time_ms
    brokers = r.array(lambda: (r.take(">i"), r.string(), r.take(">i"), r.string()))
    cluster_id = r.string()
    controller = r.take(">i")

    def partition():
        err, index, leader = r.take(">hii")
        replicas = r.array(lambda: r.take(">i"))
        isr = r.array(lambda: r.take(">i"))
        return {"error": err, "partition": index, "leader": leader, "replicas": replicas, "isr": isr}

    def topic():
        err = r.take(">h")
        name = r.string()
        internal = r.take(">b")
        return {"error": err, "name": name, "internal": bool(internal), "partitions": r.array(partition)}

    topics = r.array(topic)
    return {"brokers": brokers, "cluster_id": cluster_id, "controller": controller, "topics": topics}


def find_coordinator(addr, key, key_type):
    r = request(addr, API_FIND_COORDINATOR, 1, _string(key) + struct.pack(">b", key_type))
    r.take(">i")
    err = r.take(">h")
    r.string()
    node, host, port = r.take(">i"), r.string(), r.take(">i")
    return err, f"{host}:{port}"


def init_producer_id(addr, transactional_id):
    r = request(addr, API_INIT_PRODUCER_ID, 1, _string(transactional_id) + struct.pack(">i", 10000))
    r.take(">i")
    return r.take(">h")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # A zombie (exited, not yet reaped) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def not_in_sync(md, node):
    bad = []
    for t in md["topics"]:
        for p in t["partitions"]:
            if node in p["replicas"] and (p["leader"] < 0 or node not in p["isr"]):
                bad.append(f'{t["name"]}-{p["partition"]} leader={p["leader"]} replicas={p["replicas"]} isr={p["isr"]}')
    return bad


def ready(args):
    addrs = args.bootstrap.split(",")
    pids = [int(p) for p in args.pids.split(",") if p] if args.pids else []
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    step, last, checked = "metadata", "", False

    def say(msg):
        print(f"[kafka_probe] {time.monotonic() - t0:6.2f}s {msg}", file=sys.stderr, flush=True)

    while time.monotonic() < deadline:
        dead = [p for p in pids if not alive(p)]
        if dead:
            say(f"process {dead} exited before the cluster was ready")
            return 3
        try:
            if not checked:
                check_versions(addrs[0])
                checked = True
            if step == "metadata":
                counts = [len(metadata(a)["brokers"]) for a in addrs]
                if all(c >= args.brokers for c in counts):
                    say(f"every node answers Metadata with {counts[0]} live broker(s)")
                    step = "coordinators" if args.txn else "in-sync"
                else:
                    last = f"live brokers seen per node: {counts}"
            if step == "coordinators":
                err_g, _ = find_coordinator(addrs[0], "weir-ready-probe", 0)
                err_t, coord = find_coordinator(addrs[0], "weir-ready-probe", 1)
                err_i = init_producer_id(coord, "weir-ready-probe") if err_t == 0 else None
                if err_g == 0 and err_t == 0 and err_i == 0:
                    say("group and transaction coordinators up; InitProducerId for a transactional id succeeded")
                    step = "in-sync"
                else:
                    last = f"FindCoordinator(group) error {err_g}, FindCoordinator(txn) error {err_t}, InitProducerId error {err_i}"
            if step == "in-sync":
                if args.in_sync is None:
                    return 0
                bad = not_in_sync(metadata(addrs[0]), args.in_sync)
                if not bad:
                    say(f"node {args.in_sync} is in sync on every partition it holds")
                    return 0
                last = f"node {args.in_sync} not in sync on {len(bad)} partition(s), e.g. {bad[0]}"
        except (OSError, ConnectionError, struct.error) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.1)
    say(f"not ready after {args.timeout}s at step {step}: {last}")
    return 1


def show(args):
    md = metadata(args.bootstrap.split(",")[0])
    print(f"cluster {md['cluster_id']} controller {md['controller']}")
    for b in sorted(md["brokers"]):
        print(f"broker {b[0]} {b[1]}:{b[2]}")
    for t in sorted(md["topics"], key=lambda t: t["name"]):
        for p in sorted(t["partitions"], key=lambda p: p["partition"]):
            print(f'topic {t["name"]} {p["partition"]} leader={p["leader"]} replicas={p["replicas"]} isr={p["isr"]}')
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("ready")
    r.add_argument("--bootstrap", required=True)
    r.add_argument("--brokers", type=int, required=True)
    r.add_argument("--txn", action="store_true")
    r.add_argument("--in-sync", type=int, metavar="NODE")
    r.add_argument("--pids", default="")
    r.add_argument("--timeout", type=float, default=120)
    m = sub.add_parser("metadata")
    m.add_argument("--bootstrap", required=True)
    args = ap.parse_args()
    return ready(args) if args.cmd == "ready" else show(args)


if __name__ == "__main__":
    sys.exit(main())
