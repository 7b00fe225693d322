"""GROUPKEY-PUSH datagrams for the rekey tests: picking them out of a
capture, sending one again from the key server's address, and forging one
the way an attacker who holds the KEK (any member) could: fresh SEQ,
signed with a key that is not the group's."""

import struct
import subprocess
import sys

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

GROUPKEY_PUSH = 33
HEADER = 28  # RFC 2408 3.1
SIG = 9      # RFC 2408 3.4 payload types
SEQ = 18     # RFC 6407 5.0
HASH_LEN = {"sha256": 32}


def pushes(datagrams, to=None):
    """The GROUPKEY-PUSH payloads among udp_datagrams() tuples, optionally only those to address TO."""
    return [d[4] for d in datagrams if len(d[4]) > HEADER and d[4][18] == GROUPKEY_PUSH and (to is None or d[2] == to)]


def send_from_ks(lab, payload, dst, dport=848, src="10.1.12.1", sport=848):
    """Sends PAYLOAD as one UDP datagram from SRC:SPORT in the ks namespace. The KS holds
    the wildcard port 848 with SO_REUSEADDR, so this socket may bind the specific address
    beside it for the moment it takes to send."""
    code = ("import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
            "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
            f"s.bind(({src!r},{sport}));s.sendto(sys.stdin.buffer.read(),({dst!r},{dport}))")
    subprocess.run(lab.exec_args("ks", sys.executable, "-c", code), input=payload, check=True, capture_output=True)


def _kek_cipher(algorithm_key):
    # KEK_ALGORITHM_KEY for AES-256: the 16-octet IV, then the 32-octet key (RFC 6407 5.6.2.1).
    iv, key = algorithm_key[:16], algorithm_key[16:]
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def _payloads(body, first):
    """(type, offset, length) of each payload of a decrypted push body."""
    out, off, kind = [], 0, first
    while kind and off + 4 <= len(body):
        nxt, _, length = struct.unpack("!BBH", body[off:off + 4])
        out.append((kind, off, length))
        off, kind = off + length, nxt
    return out


def decrypt(push, algorithm_key):
    """The body of PUSH (its payloads, after the header) decrypted under the KEK's ALGORITHM_KEY."""
    dec = _kek_cipher(algorithm_key).decryptor()
    return dec.update(push[HEADER:]) + dec.finalize()


def seq_of(push, algorithm_key):
    """The SEQ of PUSH (the first payload, RFC 6407 4.1) under the KEK's ALGORITHM_KEY."""
    body = decrypt(push, algorithm_key)
    kinds = _payloads(body, push[16])
    assert kinds and kinds[0][0] == SEQ, f"the first payload is not SEQ: {kinds}"
    return struct.unpack("!I", body[4:8])[0]


def forge(push, algorithm_key, seq, key=None):
    """PUSH with SEQ set to SEQ and its SIG replaced by an RSA PKCS#1 v1.5 signature (over the
    raw hash, as IKEv1 signs) by KEY (a cryptography RSA private key of the SIG's size; default
    a freshly made one), encrypted again under the same KEK: a push any holder of the KEK could
    make, which only the group's signature key can tell apart. With the key a rollover retired,
    what a holder of the KEK and of the old key file could make."""
    header = push[:HEADER]
    body = bytearray(decrypt(push, algorithm_key))
    kinds = _payloads(bytes(body), header[16])
    assert kinds and kinds[0][0] == SEQ, f"the first payload is not SEQ: {kinds}"
    body[4:8] = struct.pack("!I", seq)
    sig = [p for p in kinds if p[0] == SIG]
    assert sig, f"no SIG payload: {kinds}"
    _, off, length = sig[-1]
    other = key or rsa.generate_private_key(public_exponent=65537, key_size=(length - 4) * 8)
    n, d = other.public_key().public_numbers().n, other.private_numbers().d
    k = length - 4
    import hashlib
    # RFC 6407 4 (and covey's crypto/gdoi.h): the signed header carries the length of the
    # unpadded message, SIG included, not the padded length the datagram's header has.
    signed_header = header[:24] + struct.pack("!I", HEADER + off + length)
    digest = hashlib.sha256(b"rekey" + bytes(signed_header) + bytes(body[:off])).digest()
    em = b"\x00\x01" + b"\xff" * (k - 3 - len(digest)) + b"\x00" + digest
    body[off + 4:off + length] = pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")
    enc = _kek_cipher(algorithm_key).encryptor()
    return bytes(header) + enc.update(bytes(body)) + enc.finalize()


def flip_bit(push, offset_from_end=40):
    """PUSH with one bit of its ciphertext flipped (in the last blocks: the SIG)."""
    b = bytearray(push)
    b[len(b) - offset_from_end] ^= 0x01
    return bytes(b)
