#!/usr/bin/env python3
"""Creates many domains over HTTP (used by scripts/bench-dns).

PUT /v1/domains/d%06d.ZONE for i in --from..--to-1 with {"sites": [...], "ttl": TTL}: domain
i is served by site r<k>-s<i % SITES> of every region k in 0..REGIONS-1, so it has one row
per region in the elected table. --workers threads, each with one keep-alive connection to
one of the given peers (writes to a follower are forwarded to the leader). Prints
"created N in S s (R/s)". Exits non-zero when any PUT is not answered 200 after --retries.
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
    ap.add_argument("--zone", required=True)
    ap.add_argument("--from", dest="start", type=int, default=0)
    ap.add_argument("--to", dest="end", type=int, required=True)
    ap.add_argument("--regions", type=int, required=True)
    ap.add_argument("--sites", type=int, required=True, help="sites per region")
    ap.add_argument("--ttl", type=int, default=300)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--retries", type=int, default=5)
    ap.add_argument("--progress", type=int, default=0, help="print progress every N seconds")
    a = ap.parse_args()
    peers = [urlsplit(p) for p in a.peers.split(",")]

    lock = threading.Lock()
    todo = list(range(a.end - 1, a.start - 1, -1))
    failed = []
    done = [0]

    def worker(w):
        u = peers[w % len(peers)]
        conn = None
        while True:
            with lock:
                if not todo:
                    break
                i = todo.pop()
            sites = [f"r{k}-s{i % a.sites}" for k in range(a.regions)]
            body = json.dumps({"sites": sites, "ttl": a.ttl}).encode()
            status, text = None, ""
            for _ in range(a.retries):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
                    conn.request("PUT", f"/v1/domains/d{i:06d}.{a.zone}", body=body,
                                 headers={"Content-Type": "application/json"})
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
                time.sleep(0.2)
            with lock:
                if status == 200:
                    done[0] += 1
                else:
                    failed.append((i, status, text[:200]))
        if conn is not None:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(a.workers)]
    for t in threads:
        t.start()
    last = t0
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        now = time.monotonic()
        if a.progress and now - last >= a.progress:
            last = now
            print(f"dns-load.py: {done[0]} of {a.end - a.start} after {now - t0:.0f} s "
                  f"({done[0] / (now - t0):.0f}/s)", file=sys.stderr, flush=True)
    took = time.monotonic() - t0
    if failed:
        for i, status, text in failed[:5]:
            print(f"domain d{i:06d}: {status} {text}", file=sys.stderr)
        sys.exit(f"dns-load.py: {len(failed)} of {a.end - a.start} PUTs failed")
    n = a.end - a.start
    print(f"created {n} in {took:.1f} s ({n / took:.0f}/s)")


if __name__ == "__main__":
    main()
