#!/usr/bin/env python3
"""Failover trials against a running switchboard cluster (driven by scripts/bench-failover).

Two nodes of one domain beat every --interval seconds, each beat to the next peer in turn
over one persistent HTTP connection per (node, peer). A trial silences the node every peer
elects, remembers when its last successful heartbeat was sent, and polls every peer's
GET /v1/dispatch?stale (each peer in its own thread, every --poll seconds) until each one
answers the other node: the failover time is the latest of those first answers minus the
last heartbeat. The silenced node then beats again; the next trial starts once every peer
has it up and every peer shows the same row. Writes one JSON line per trial to --out.
"""

import argparse
import http.client
import json
import random
import sys
import threading
import time
from urllib.parse import urlsplit

BODY = json.dumps({"cpu": 0.2, "load": 0.3, "latency_ms": 20.0, "error_rate": 0.0, "bandwidth_mbps": 900}).encode()
HEADERS = {"Content-Type": "application/json"}


class Conn:
    """One keep-alive HTTP/1.1 connection, reopened after any failure."""

    def __init__(self, url, timeout):
        u = urlsplit(url)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.c = None

    def call(self, method, path, body=None):
        for attempt in (1, 2):  # a kept-alive connection the server closed: one retry
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.c.request(method, path, body=body, headers=HEADERS if body is not None else {})
                r = self.c.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status, data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    return None, b""
        return None, b""

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


class Beater(threading.Thread):
    """Heartbeats for one node, paced on an absolute schedule; can be paused."""

    def __init__(self, node, peers, interval, timeout):
        super().__init__(daemon=True, name=f"beat-{node}")
        self.node, self.interval = node, interval
        self.conns = [Conn(p, timeout) for p in peers]
        self.path = f"/v1/nodes/{node}/heartbeat"
        self.turn = 0
        self.lock = threading.Lock()
        self.running = threading.Event()
        self.running.set()
        self.idle = threading.Event()  # set while paused, after the last beat finished
        self.last_ok = None  # (monotonic, wall) when the last accepted beat was sent
        self.sent = self.accepted = self.refused = 0
        self.stop_all = False

    def run(self):
        # A random phase, at the start and after every pause: the leader checks for silence
        # on a 100 ms tick, and a schedule locked to it would always sample the same delay.
        next_at = time.monotonic() + random.uniform(0, self.interval)
        while not self.stop_all:
            if not self.running.is_set():
                self.idle.set()
                self.running.wait(0.5)
                next_at = time.monotonic() + random.uniform(0, self.interval)
                continue
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
                if not self.running.is_set():
                    continue
            self.idle.clear()
            for _ in range(len(self.conns)):
                self.turn += 1
                conn = self.conns[self.turn % len(self.conns)]
                sent_mono, sent_wall = time.monotonic(), time.time()
                status, _ = conn.call("POST", self.path, BODY)
                with self.lock:
                    self.sent += 1
                    if status == 202:
                        self.accepted += 1
                        self.last_ok = (sent_mono, sent_wall)
                    else:
                        self.refused += 1
                if status == 202:
                    break
            next_at += self.interval
            if next_at < time.monotonic():
                next_at = time.monotonic()  # fell behind: no burst to catch up

    def pause(self):
        """Stops beating; returns the last accepted beat once no beat is in flight."""
        self.running.clear()
        self.idle.wait()
        with self.lock:
            return self.last_ok

    def resume(self):
        self.idle.clear()
        self.running.set()


def get_json(conn, path):
    status, data = conn.call("GET", path)
    if status != 200:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def row_of(conn, domain, region):
    """(node, reason, revision) of the row as this peer has it, or None."""
    body = get_json(conn, "/v1/dispatch?stale")
    if body is None:
        return None
    for r in body.get("rows", []):
        if r.get("domain") == domain and r.get("region") == region:
            return r.get("node"), r.get("reason"), r.get("revision")
    return None


def health_of(conn, node):
    body = get_json(conn, f"/v1/nodes/{node}?stale")
    return body.get("health") if body else None


def wait_until(deadline, what, check, every):
    while True:
        v = check()
        if v:
            return v
        if time.monotonic() > deadline:
            sys.exit(f"failover.py: no {what} within the deadline")
        time.sleep(every)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", required=True, help="comma-separated peer base URLs, e.g. http://127.0.0.1:18111")
    ap.add_argument("--nodes", required=True, help="the two node ids, comma-separated")
    ap.add_argument("--domain", required=True)
    ap.add_argument("--region", required=True)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--interval", type=float, default=0.25, help="seconds between one node's heartbeats")
    ap.add_argument("--poll", type=float, default=0.02, help="seconds between polls of one peer")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds a trial or a recovery may take")
    ap.add_argument("--out", required=True, help="file for one JSON line per trial")
    a = ap.parse_args()

    peers = a.peers.split(",")
    nodes = a.nodes.split(",")
    assert len(nodes) == 2, "two nodes"
    beaters = {n: Beater(n, peers, a.interval, 2.0) for n in nodes}
    for b in beaters.values():
        b.start()
    ctl = [Conn(p, 2.0) for p in peers]  # the driver's own connections

    def settled():
        """The row every peer agrees on, once both nodes are up everywhere."""
        rows = [row_of(c, a.domain, a.region) for c in ctl]
        if any(r is None or r[0] not in nodes for r in rows) or len({(r[0], r[2]) for r in rows}) != 1:
            return None
        if any(health_of(c, n) != "up" for c in ctl for n in nodes):
            return None
        return rows[0]

    out = open(a.out, "w")
    row = wait_until(time.monotonic() + 30, "elected node on every peer with both nodes up", settled, 0.05)
    for trial in range(1, a.trials + 1):
        victim = row[0]
        survivor = nodes[1 - nodes.index(victim)]
        last = beaters[victim].pause()
        if last is None:
            sys.exit(f"failover.py: {victim} never had a heartbeat accepted")
        last_mono, last_wall = last

        # Every peer in its own thread: the first answer naming the survivor.
        first = [None] * len(peers)
        reasons = [None] * len(peers)
        deadline = last_mono + a.timeout

        def watch(i):
            conn = Conn(peers[i], 2.0)
            while time.monotonic() < deadline:
                r = row_of(conn, a.domain, a.region)
                if r is not None and r[0] == survivor:
                    first[i] = time.monotonic()
                    reasons[i] = r[1]
                    break
                time.sleep(a.poll)
            conn.close()

        watchers = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(len(peers))]
        for w in watchers:
            w.start()
        for w in watchers:
            w.join()
        if any(f is None for f in first):
            sys.exit(f"failover.py: trial {trial}: not every peer answered {survivor} within {a.timeout}s")
        per_peer_ms = [round(1000 * (f - last_mono), 1) for f in first]
        record = {
            "trial": trial,
            "killed": victim,
            "elected": survivor,
            "failover_ms": max(per_peer_ms),
            "per_peer_ms": per_peer_ms,
            "reasons": reasons,
            "last_beat_wall": last_wall,
        }
        out.write(json.dumps(record) + "\n")
        out.flush()
        print(
            f"trial {trial:2d}: {victim} silenced, every peer answers {survivor} after {max(per_peer_ms):7.1f} ms "
            f"(peers: {', '.join(f'{v:.0f}' for v in per_peer_ms)}; reason {reasons[0]})",
            file=sys.stderr,
            flush=True,
        )

        beaters[victim].resume()
        row = wait_until(
            time.monotonic() + a.timeout, f"recovery of {victim} on every peer after trial {trial}", settled, 0.05
        )

    for b in beaters.values():
        b.stop_all = True
        b.running.set()
    sent = sum(b.sent for b in beaters.values())
    refused = sum(b.refused for b in beaters.values())
    print(json.dumps({"heartbeats_sent": sent, "heartbeats_not_202": refused}), file=out)
    out.close()


if __name__ == "__main__":
    main()
