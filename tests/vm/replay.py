#!/usr/bin/env python3
"""What an attacker on the transit router does with the group's ESP
(tests/vm/datapath.sh, scenarios 4 and 6).

    replay.py IFACE SRC DST [--after S]... [--out IFACE2 --dst-mac MAC --set-dst ADDR] [--set-spi SPI]
    replay.py IFACE SRC DST --clear-udp --dst-mac MAC

Watches IFACE (AF_PACKET, r2's side of a link) for the first ESP frame
SRC -> DST (IPv4 or IPv6, as the addresses are) that r2 sends out of it,
and sends a byte-identical copy of it out of IFACE at once, then again
after each --after delay (seconds, from the capture). With --out, the
copies go out of IFACE2 instead, to --dst-mac, and with --set-dst their
outer destination is rewritten (the IPv4 checksum fixed): the packet
offered to another host's ESP input. --set-spi gives the copies another
SPI: ESP of an SA the receiver does not hold. Prints one line per copy:
spi, seq and seconds since the capture.
--clear-udp sends one UDP datagram SRC:5003 -> DST:5003 in clear out of
IFACE to --dst-mac instead: traffic a group member must not accept so.
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
    p.add_argument("--set-spi", type=lambda v: int(v, 0))
    p.add_argument("--clear-udp", action="store_true")
    p.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()
    v6 = ":" in a.src
    af = socket.AF_INET6 if v6 else socket.AF_INET
    src, dst = socket.inet_pton(af, a.src), socket.inet_pton(af, a.dst)
    ethertype = b"\x86\xdd" if v6 else b"\x08\x00"
    # Where the outer header keeps its protocol and addresses.
    proto_at, src_at, dst_at = (6, 8, 24) if v6 else (9, 12, 16)

    if a.clear_udp:
        clear_udp(a, v6, src, dst, ethertype)
        return

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
        if addr[2] != PACKET_OUTGOING or len(frame) < 62 or frame[12:14] != ethertype:
            continue
        ip = frame[14:]
        if ip[proto_at] == 50 and ip[src_at:src_at + len(src)] == src and ip[dst_at:dst_at + len(dst)] == dst:
            break
    captured = time.monotonic()
    rx.close()

    out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    out.bind((a.out or a.iface, 0))
    ihl = 40 if v6 else (ip[0] & 0x0F) * 4
    if a.out:
        header = bytearray(ip[:ihl])
        if a.set_dst:
            header[dst_at:dst_at + len(dst)] = socket.inet_pton(af, a.set_dst)
        if not v6:
            header[10:12] = b"\0\0"
            header[10:12] = struct.pack("!H", checksum(bytes(header)))
        frame = bytes.fromhex(a.dst_mac.replace(":", "")) + out.getsockname()[4] + frame[12:14] + bytes(header) + ip[ihl:]
    if a.set_spi is not None:
        at = 14 + ihl
        frame = frame[:at] + struct.pack("!I", a.set_spi) + frame[at + 4:]
        ip = frame[14:]
    spi, seq = struct.unpack("!II", ip[ihl:ihl + 8])
    for delay in [0.0] + a.after:
        wait = captured + delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        out.send(frame)
        print(f"spi=0x{spi:08x} seq={seq} sent {time.monotonic() - captured:.2f} s after capture", flush=True)


def clear_udp(a, v6, src, dst, ethertype):
    payload = b"covey clear-traffic probe"
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", 5003, 5003, length, 0) + payload
    if v6:
        pseudo = src + dst + struct.pack("!IxxxB", length, 17)
        ip = struct.pack("!IHBB", 6 << 28, length, 17, 64) + src + dst
    else:
        pseudo = src + dst + struct.pack("!xBH", 17, length)
        ip = bytearray(struct.pack("!BBHHHBBH", 0x45, 0, 20 + length, 0, 0x4000, 64, 17, 0) + src + dst)
        ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
        ip = bytes(ip)
    data = pseudo + udp + (b"\0" if len(udp) % 2 else b"")
    udp = udp[:6] + struct.pack("!H", checksum(data) or 0xFFFF) + udp[8:]
    out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    out.bind((a.iface, 0))
    out.send(bytes.fromhex(a.dst_mac.replace(":", "")) + out.getsockname()[4] + ethertype + ip + udp)
    print(f"clear UDP {a.src} -> {a.dst} sent", flush=True)


if __name__ == "__main__":
    main()
