#!/usr/bin/env python3
"""Sends random and mutated datagrams at a key server; run inside a lab
namespace by test_fuzz.py.

  datagram_fuzz.py --seeds FILE --source A:P --target A:P --random N --mutated N --rng SEED
                   [--receiver-pid PID]

FILE holds one real datagram per line in hex (captured from a registration).
Mutations: bit flips (anywhere, or past the ISAKMP header so the cookies of a
live SA still lead into decryption), truncation and extension, each with the
header's length field left alone or made to match. Random datagrams are
either bytes alone or behind a plausible ISAKMP header. With --receiver-pid
(the key server's), every few datagrams the sender waits for the receiver's
socket queue to empty, so the test measures the key server, not the size of
its socket buffer on a busy machine. Prints a JSON summary: how many of each
kind were sent."""

import argparse
import json
import random
import socket
import struct
import sys
import time
from collections import Counter

HEADER = 28  # ISAKMP header octets (RFC 2408 3.1)


def endpoint(text):
    address, port = text.rsplit(":", 1)
    return address, int(port)


def fix_length(d):
    if len(d) >= HEADER:
        d[24:28] = struct.pack("!I", len(d))
    return d


def mutate(rng, seed):
    d = bytearray(seed)
    kind = rng.choice(["flip", "flip-body", "truncate", "truncate-fixed", "extend", "extend-fixed"])
    if kind.startswith("flip"):
        low = HEADER if kind == "flip-body" and len(d) > HEADER else 0
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(low, len(d))
            d[i] ^= 1 << rng.randrange(8)
    elif kind.startswith("truncate"):
        d = d[:rng.randrange(len(d))]
    else:
        d += rng.randbytes(rng.randint(1, 256))
    if kind.endswith("fixed"):
        fix_length(d)
    return kind, bytes(d)


def random_datagram(rng):
    if rng.random() < 0.5:
        return "random-bytes", rng.randbytes(rng.randint(0, 1500))
    body = rng.randbytes(rng.randint(0, 1200))
    exchange = rng.choice([2, 5, 32, 33, rng.randrange(256)])
    flags = rng.choice([0, 1, rng.randrange(256)])
    h = rng.randbytes(16) + struct.pack("!BBBB", rng.randrange(20), 0x10, exchange, flags) + rng.randbytes(4)
    return "random-behind-header", bytes(fix_length(bytearray(h + b"\0\0\0\0" + body)))


def queued(pid, port):
    """Octets waiting in PID's IPv4 UDP sockets bound to PORT (/proc/PID/net/udp is PID's namespace's)."""
    total = 0
    with open(f"/proc/{pid}/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                total += int(fields[4].split(":")[1], 16)
    return total


def wait_drained(pid, port, timeout=5.0):
    deadline = time.monotonic() + timeout
    while queued(pid, port) and time.monotonic() < deadline:
        time.sleep(0.001)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", required=True)
    p.add_argument("--source", type=endpoint, required=True)
    p.add_argument("--target", type=endpoint, required=True)
    p.add_argument("--random", type=int, default=10000)
    p.add_argument("--mutated", type=int, default=10000)
    p.add_argument("--rng", type=int, required=True)
    p.add_argument("--receiver-pid", type=int, help="wait for this process's socket queue to drain")
    p.add_argument("--window", type=int, default=50, help="datagrams sent between waits")
    a = p.parse_args()

    seeds = [bytes.fromhex(line) for line in open(a.seeds) if line.strip()]
    if not seeds:
        sys.exit("no seed datagrams")
    rng = random.Random(a.rng)
    work = [random_datagram(rng) for _ in range(a.random)] + [mutate(rng, rng.choice(seeds)) for _ in range(a.mutated)]
    rng.shuffle(work)

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(a.source)
    s.setblocking(False)
    sent = Counter()
    for i, (kind, d) in enumerate(work):
        s.sendto(d, a.target)
        sent[kind] += 1
        if i % a.window == a.window - 1:
            if a.receiver_pid:
                wait_drained(a.receiver_pid, a.target[1])
            else:
                time.sleep(0.002)
            try:  # the key server's answers are not looked at
                while s.recv(65535):
                    pass
            except BlockingIOError:
                pass
    print(json.dumps({"sent": sum(sent.values()), "kinds": dict(sent)}))


if __name__ == "__main__":
    main()
