#!/usr/bin/env python3
"""Expected values for the GROUPKEY-PUSH ACK (RFC 8263), REKEY_ACK_KEK_SHA256.

Written from RFC 8263 sections 2.1 and 3 with nothing but the Python
standard library, so gdoi_push_test compares covey's C++ against a second
reading of the RFC rather than against its own earlier output.

  base_key = KEK_ALGORITHM_KEY without its leading IV (2.1), zero-filled
             to the right to the 512-bit HMAC-SHA-256 block (3.2, RFC 4868)
  ack_key  = prf(base_key, "GROUPKEY-PUSH ACK" NUL | SPI | L), L = 512 as
             2 octets ("L MUST match the length of the base_key (i.e., 512
             bits for PRF-HMAC-SHA-256)")
  HASH     = prf(ack_key zero-filled, SEQ | ID), SEQ and ID whole payloads
  message  = HDR (cookies = SPI, Next Payload HASH, version 1.0,
             exchange 35, flags 0, Message ID 0), HASH, SEQ, ID

Prints one "name hex" line per value. "in.*" lines are the inputs the C++
test feeds to covey; the rest are expected outputs, named
<value>.<kek cipher>[.<member family>].
"""

import hashlib
import hmac

# KEK cipher: (IV octets, key octets)
CIPHERS = {"aes128": (16, 16), "aes256": (16, 32), "3des": (8, 24)}
BLOCK = 64  # HMAC-SHA-256 block size, octets


def det(label, n):
    """n deterministic, arbitrary-looking bytes named by label."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"covey push ack kat %s %d" % (label.encode(), counter)).digest()
        counter += 1
    return out[:n]


def zero_fill(key):
    return key + b"\x00" * (BLOCK - len(key)) if len(key) < BLOCK else key


def prf(key, data):
    return hmac.new(zero_fill(key), data, hashlib.sha256).digest()


def payload(next_payload, body):
    return bytes([next_payload, 0]) + (4 + len(body)).to_bytes(2, "big") + body


SPI = det("SPI", 16)
SEQ = 0x00000007
MEMBERS = {"v4": (1, bytes([10, 1, 23, 3])),  # ID_IPV4_ADDR
           "v6": (5, bytes.fromhex("20010db8000000000000000000000023"))}  # ID_IPV6_ADDR
LABEL = b"GROUPKEY-PUSH ACK\x00"


def main():
    print("in.spi", SPI.hex())
    print("in.seq", SEQ.to_bytes(4, "big").hex())
    for fam, (_, addr) in MEMBERS.items():
        print("in.member.%s" % fam, addr.hex())
    for cname, (iv_len, key_len) in CIPHERS.items():
        kek_algorithm_key = det("KEK_ALGORITHM_KEY " + cname, iv_len + key_len)
        print("in.kek_algorithm_key.%s" % cname, kek_algorithm_key.hex())
        base_key = zero_fill(kek_algorithm_key[iv_len:])
        assert len(base_key) * 8 == 512
        ack_key = hmac.new(base_key, LABEL + SPI + (512).to_bytes(2, "big"), hashlib.sha256).digest()
        # HMAC's own key padding is the same zero fill: a second check.
        assert ack_key == hmac.new(kek_algorithm_key[iv_len:], LABEL + SPI + b"\x02\x00", hashlib.sha256).digest()
        print("ack_key.%s" % cname, ack_key.hex())
        for fam, (id_type, addr) in MEMBERS.items():
            seq = payload(5, SEQ.to_bytes(4, "big"))                      # next: ID
            ident = payload(0, bytes([id_type, 0]) + b"\x00\x00" + addr)  # protocol 0, port 0
            h = prf(ack_key, seq + ident)
            hashp = payload(18, h)                                        # next: SEQ
            body = hashp + seq + ident
            hdr = SPI + bytes([8, 0x10, 35, 0]) + (0).to_bytes(4, "big") + (28 + len(body)).to_bytes(4, "big")
            print("hash.%s.%s" % (cname, fam), h.hex())
            print("ack.%s.%s" % (cname, fam), (hdr + body).hex())


if __name__ == "__main__":
    main()
