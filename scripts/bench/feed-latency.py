#!/usr/bin/env python3
"""Change-feed delivery latency: one consumer long-polls region eu's feed on one peer
while a writer puts objects from region "bench" through another, one at a time, paced.
For each write: sent -> answered (committed and applied on the peer that took it) ->
its event received by the waiting long poll. Prints the distribution of
answer->event (commit to delivery) and sent->event.

usage: feed-latency.py WRITE_URL FEED_URL [COUNT] [INTERVAL_MS] [QUERY]
QUERY is appended to the feed request ("" linearizable, "&stale" local)."""
import json
import sys
import threading
import time
import urllib.request

write_url, feed_url = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 500
interval = (int(sys.argv[4]) if len(sys.argv) > 4 else 20) / 1000
query = sys.argv[5] if len(sys.argv) > 5 else ""

received = {}  # object id -> monotonic time its first event arrived
done = threading.Event()


def consume():
    cursor = 0
    while not done.is_set():
        url = f"{feed_url}/v1/regions/eu/changes?since={cursor}&wait=5{query}"
        with urllib.request.urlopen(url, timeout=15) as r:
            body = json.load(r)
        now = time.monotonic()
        ids = []
        for e in body["events"]:
            received.setdefault(e["object"], now)
            ids.append(e["id"])
        cursor = body["cursor"]
        if ids:
            req = urllib.request.Request(f"{feed_url}/v1/regions/eu/acks", data=json.dumps({"events": ids}).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=15).read()


consumer = threading.Thread(target=consume, daemon=True)
consumer.start()
time.sleep(0.5)  # the first long poll is waiting
sent, answered = {}, {}
tag = int(time.time() * 1000)  # fresh object ids each run: a rewrite with the same clock would be stale
for i in range(count):
    oid = f"lat-{tag}-{i}"
    body = json.dumps({"region": "bench", "clock": {"bench": 1}, "size": 1, "hash": f"h{i}"}).encode()
    req = urllib.request.Request(f"{write_url}/v1/objects/{oid}", data=body, method="PUT",
                                 headers={"Content-Type": "application/json"})
    sent[oid] = time.monotonic()
    urllib.request.urlopen(req, timeout=15).read()
    answered[oid] = time.monotonic()
    time.sleep(interval)
deadline = time.monotonic() + 10
while len(received) < count and time.monotonic() < deadline:
    time.sleep(0.05)
done.set()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


commit = [1000 * (received[o] - answered[o]) for o in received]
total = [1000 * (received[o] - sent[o]) for o in received]
print(f"events received: {len(received)} of {count}")
for name, xs in (("answer->event", commit), ("sent->event", total)):
    if not xs:
        sys.exit("no event arrived")
    print(f"{name}: p50 {pct(xs, 50):.2f} ms  p90 {pct(xs, 90):.2f} ms  p99 {pct(xs, 99):.2f} ms  max {max(xs):.2f} ms")
