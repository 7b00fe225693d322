#!/usr/bin/env python3
"""What an attacker on the transit router does with the group's ESP
(tests/vm/datapath.sh, scenarios 4 and 6).

    replay.py IFACE SRC DST [--after S]... [--out IFACE2 --dst-mac MAC --set-dst ADDR]

Watches IFACE (AF_PACKET, r2's side of a link) for the first IPv4 ESP
frame SRC -> DST that r2 sends out of it, and sends a byte-identical copy
of it out of IFACE at once, then again after each --after delay (seconds,
from the capture). With --out, the copies go out of IFACE2 instead, to
--dst-mac, and with --set-dst their outer destination is rewritten (the
IPv4 checksum fixed): the packet offered to another host's ESP input.
Prints one line per copy: spi, seq and seconds since the capture.
"""
import argparse
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def checksum(header):
    s = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def main():
    p = argparse.ArgumentParser()
    p.add_argument("iface")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--after", type=float, action="append", default=[])
    p.add_argument("--out")
    p.add_argument("--dst-mac")
    p.add_argument("--set-dst")
    p.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()
    src, dst = socket.inet_aton(a.src), socket.inet_aton(a.dst)

    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    rx.bind((a.iface, 0))
    rx.settimeout(a.timeout)
    deadline = time.monotonic() + a.timeout
    while True:
        if time.monotonic() > deadline:
            sys.exit(f"replay.py: no ESP {a.src} -> {a.dst} left by {a.iface} within {a.timeout} s")
        try:
            frame, addr = rx.recvfrom(65535)
        except TimeoutError:
            continue
        if addr[2] != PACKET_OUTGOING or len(frame) < 42 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        if ip[9] == 50 and ip[12:16] == src and ip[16:20] == dst:
            break
    captured = time.monotonic()
    rx.close()

    out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    out.bind((a.out or a.iface, 0))
    if a.out:
        ihl = (ip[0] & 0x0F) * 4
        header = bytearray(ip[:ihl])
        if a.set_dst:
            header[16:20] = socket.inet_aton(a.set_dst)
        header[10:12] = b"\0\0"
        header[10:12] = struct.pack("!H", checksum(bytes(header)))
        frame = bytes.fromhex(a.dst_mac.replace(":", "")) + out.getsockname()[4] + frame[12:14] + bytes(header) + ip[ihl:]
    ihl = (ip[0] & 0x0F) * 4
    spi, seq = struct.unpack("!II", ip[ihl:ihl + 8])
    for delay in [0.0] + a.after:
        wait = captured + delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        out.send(frame)
        print(f"spi=0x{spi:08x} seq={seq} sent {time.monotonic() - captured:.2f} s after capture", flush=True)


if __name__ == "__main__":
    main()
