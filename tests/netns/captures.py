"""Reading and writing the lab's captures, and asking tshark and coveyctl
decode about them."""

import ipaddress
import json
import re
import struct
import subprocess
from pathlib import Path

from netns_lab import COVEYCTL

LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW, LINKTYPE_LINUX_SLL2 = 1, 113, 101, 276


def udp_datagrams(pcap_path, port=848, ttl=False, at=False):
    """(src, sport, dst, dport, payload) of every IPv4 or IPv6 UDP datagram to or from PORT in a
    classic pcap (Ethernet, Linux cooked v1 or v2 (tcpdump -i any) or raw IP), in capture order; with TTL, the IP
    TTL (IPv6: hop limit) is appended to each tuple, with AT the capture time (seconds since the epoch).
    IPv6 addresses in their compressed text; UDP right after the IPv6 header or after a fragment header
    (a push longer than the link MTU leaves the key server in IPv6 fragments: reassembled here, the datagram
    at its last fragment). A capture still being written may end in part of a record: that record is left out."""
    data = Path(pcap_path).read_bytes()
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
              b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}.get(data[:4])
    if not endian:
        raise ValueError(f"{pcap_path}: not a classic pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_len = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16, LINKTYPE_LINUX_SLL2: 20, LINKTYPE_RAW: 0}[linktype]
    out, off = [], 24
    fragments = {}  # (src, dst, identification) -> {offset: bytes}
    while off + 16 <= len(data):
        sec, usec, incl = struct.unpack(endian + "III", data[off:off + 12])
        if off + 16 + incl > len(data):
            break
        ip = data[off + 16 + link_len:off + 16 + incl]
        off += 16 + incl
        if len(ip) >= 48 and ip[0] >> 4 == 6 and ip[6] in (17, 44):
            udp = ip[40:40 + struct.unpack("!H", ip[4:6])[0]]
            if ip[6] == 44:  # RFC 8200 4.5: next header, reserved, offset and M flag, identification
                nxt, _, frag, ident = struct.unpack("!BBHI", udp[:8])
                key = (ip[8:24], ip[24:40], ident)
                parts = fragments.setdefault(key, {})
                parts[frag & ~7] = udp[8:]
                if frag & 1 or nxt != 17:
                    continue
                offsets = sorted(parts)
                ends = [o + len(parts[o]) for o in offsets]
                if offsets[0] != 0 or offsets[1:] != ends[:-1]:
                    continue  # a fragment missing from the capture
                udp = b"".join(parts[o] for o in offsets)
                del fragments[key]
            sport, dport, ulen = struct.unpack("!HHH", udp[:6])
            if port in (sport, dport):
                d = (_ip6(ip[8:24]), sport, _ip6(ip[24:40]), dport, bytes(udp[8:ulen]))
                out.append(d + ((ip[7],) if ttl else ()) + ((sec + usec / 1e6,) if at else ()))
            continue
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        sport, dport, ulen = struct.unpack("!HHH", ip[ihl:ihl + 6])
        if port in (sport, dport):
            d = (_ip(ip[12:16]), sport, _ip(ip[16:20]), dport, bytes(ip[ihl + 8:ihl + ulen]))
            out.append(d + ((ip[8],) if ttl else ()) + ((sec + usec / 1e6,) if at else ()))
    return out


def _ip(b):
    return ".".join(map(str, b))


def _ip6(b):
    return str(ipaddress.IPv6Address(bytes(b)))


def write_pcap(path, datagrams):
    """A raw-IP pcap of (src, sport, dst, dport, payload) UDP datagrams (checksums zero)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW)]
    for i, (src, sport, dst, dport, payload) in enumerate(datagrams):
        udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                         bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        frame = ip + udp
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
    Path(path).write_bytes(b"".join(out))
    return path


def _checksum(header):
    s = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def decode(pcap, keylog):
    """coveyctl decode --json; the parsed document."""
    r = subprocess.run([str(COVEYCTL), "decode", "--pcap", str(pcap), "--keylog", str(keylog), "--json"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise AssertionError(f"coveyctl decode exited {r.returncode}: {r.stderr}")
    return json.loads(r.stdout)


MAIN_MODE = "Exchange type: Identity Protection (Main Mode)"
# What tshark prints for a field it could not dissect, and for its own error-level expert items.
_PROBLEM = re.compile(r"Malformed|\[Expert Info \(Error")


def tshark_frames(pcap):
    """tshark -V over PCAP with UDP 848 as ISAKMP: {frame number: dissection text}."""
    r = subprocess.run(["tshark", "-r", str(pcap), "-d", "udp.port==848,isakmp", "-V"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise AssertionError(f"tshark exited {r.returncode}: {r.stderr}")
    frames = {}
    for block in re.split(r"(?m)^(?=Frame \d+:)", r.stdout):
        m = re.match(r"Frame (\d+):", block)
        if m:
            frames[int(m.group(1))] = block
    return frames


def main_mode_problems(frames):
    """Of tshark_frames' output: (numbers of the Main Mode frames, {frame: problem lines})."""
    main_mode = sorted(n for n, text in frames.items() if MAIN_MODE in text)
    problems = {}
    for n in main_mode:
        lines = [line.strip() for line in frames[n].splitlines() if _PROBLEM.search(line)]
        if lines:
            problems[n] = lines
    return main_mode, problems
