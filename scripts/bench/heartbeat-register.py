#!/usr/bin/env python3
"""Registers many nodes over HTTP (used by scripts/bench-heartbeats).

PUT /v1/nodes/PREFIX%05d for i in 0..NODES-1 with
{"ip": 198.18.x.y, "region": REGION, "site": "s<i % SITES>", "capacity": 100}, from
--workers threads, each with one keep-alive connection to one of the given peers (writes
to a follower are forwarded to the leader). Prints "registered N in S s (R/s)". Exits
non-zero when any PUT is not answered 200 after --retries tries.
"""

import argparse
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", required=True, help="comma-separated peer base URLs")
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--sites", type=int, required=True)
    ap.add_argument("--region", required=True)
    ap.add_argument("--prefix", default="hb-")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--retries", type=int, default=5)
    a = ap.parse_args()
    peers = [urlsplit(p) for p in a.peers.split(",")]

    lock = threading.Lock()
    todo = list(range(a.nodes))
    failed = []

    def worker(w):
        u = peers[w % len(peers)]
        conn = None
        while True:
            with lock:
                if not todo:
                    break
                i = todo.pop()
            body = json.dumps(
                {"ip": f"198.18.{i // 250}.{i % 250 + 1}", "region": a.region, "site": f"s{i % a.sites}", "capacity": 100}
            ).encode()
            status, text = None, ""
            for _ in range(a.retries):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                    conn.request("PUT", f"/v1/nodes/{a.prefix}{i:05d}", body=body, headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    text = r.read().decode(errors="replace")
                    status = r.status
                    if status == 200:
                        break
                except (OSError, http.client.HTTPException) as e:
                    text = str(e)
                    if conn is not None:
                        conn.close()
                    conn = None
                time.sleep(0.1)
            if status != 200:
                with lock:
                    failed.append((i, status, text[:200]))
        if conn is not None:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(a.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    if failed:
        for i, status, text in failed[:5]:
            print(f"node {a.prefix}{i:05d}: {status} {text}", file=sys.stderr)
        sys.exit(f"heartbeat-register.py: {len(failed)} of {a.nodes} registrations failed")
    print(f"registered {a.nodes} nodes in {took:.1f} s ({a.nodes / took:.0f}/s)")


if __name__ == "__main__":
    main()
