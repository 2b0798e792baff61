#!/usr/bin/env python3
"""Asks one or two DNS servers for every name of a dnsperf query file over UDP (used by
scripts/bench-dns) and compares the answers.

Each name is asked once per server (type A, no EDNS, from 127.0.0.1), --window queries in
flight, a query unanswered after 1 s is asked again (up to 3 times). Prints one JSON
object: total names, per server the names answered NOERROR with at least one A record
("answered"), by rcode, and with --compare the names whose sorted A records differ
(count and the first 10).
"""

import argparse
import json
import random
import socket
import struct
import sys
import time


def encode(qid, name):
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)  # RD off, one question
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)


def skip_name(b, i):
    while True:
        n = b[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += n + 1


def decode(b):
    qid, flags, qd, an = struct.unpack(">HHHH", b[:8])
    i = 12
    for _ in range(qd):
        i = skip_name(b, i) + 4
    addrs = []
    for _ in range(an):
        i = skip_name(b, i)
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", b[i:i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(b[i:i + 4]))
        i += rdlen
    return qid, flags & 0xF, sorted(addrs)


def ask_all(server, names, window):
    host, port = server.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, int(port)))
    s.settimeout(0.05)
    result = {}
    pending = {}  # qid -> (name, sent, tries)
    todo = list(reversed(names))
    ids = list(range(65536))
    random.shuffle(ids)
    free = ids
    while todo or pending:
        while todo and len(pending) < window:
            name = todo.pop()
            qid = free.pop()
            s.send(encode(qid, name))
            pending[qid] = (name, time.monotonic(), 1)
        try:
            b = s.recv(4096)
            qid, rcode, addrs = decode(b)
            if qid in pending:
                name = pending.pop(qid)[0]
                free.append(qid)
                result[name] = (rcode, addrs)
        except socket.timeout:
            pass
        now = time.monotonic()
        for qid, (name, sent, tries) in list(pending.items()):
            if now - sent > 1.0:
                del pending[qid]
                free.append(qid)
                if tries < 3:
                    nid = free.pop()
                    s.send(encode(nid, name))
                    pending[nid] = (name, now, tries + 1)
                else:
                    result[name] = ("timeout", [])
    return result


def summary(res):
    by = {}
    for rcode, _ in res.values():
        key = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}.get(rcode, str(rcode))
        by[key] = by.get(key, 0) + 1
    return {"answered": sum(1 for r, a in res.values() if r == 0 and a), "rcodes": by}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--server", required=True, help="host:port")
    ap.add_argument("--compare", help="host:port of a second server")
    ap.add_argument("--names", required=True, help="dnsperf query file (NAME TYPE per line)")
    ap.add_argument("--window", type=int, default=200)
    a = ap.parse_args()
    names = [l.split()[0] for l in open(a.names) if l.strip()]
    one = ask_all(a.server, names, a.window)
    out = {"total": len(names), "server": summary(one)}
    if a.compare:
        two = ask_all(a.compare, names, a.window)
        out["compare"] = summary(two)
        diff = [(n, one[n], two[n]) for n in names if one[n] != two[n]]
        out["mismatches"] = len(diff)
        out["first_mismatches"] = [f"{n}: {x} vs {y}" for n, x, y in diff[:10]]
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
