#!/usr/bin/env python3
"""Expected values for the IKEv1 (RFC 2409) and GDOI (RFC 6407) derivations.

An independent implementation, written from the RFC text with nothing but the
Python standard library (hashlib, hmac), so that crypto_ikev1_test and
crypto_gdoi_test compare covey's C++ against a second reading of the RFCs
rather than against its own earlier output.

Prints one "name hex" line per value. Lines named "in.*" are the fixed inputs
(the C++ test feeds the same bytes to covey); every other line is an expected
output. Names: <derivation>.<prf or hash>[.<cipher>].
"""

import hashlib
import hmac

HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384}
# Cipher: (key bytes, block bytes)
CIPHERS = {"aes128": (16, 16), "aes256": (32, 16), "3des": (24, 8)}


def det(label, n):
    """n deterministic, arbitrary-looking bytes named by label."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"covey kat %s %d" % (label.encode(), counter)).digest()
        counter += 1
    return out[:n]


def prf(h, key, data):
    return hmac.new(key, data, HASHES[h]).digest()


# --- fixed inputs -----------------------------------------------------------
NI_B = det("Ni_b", 20)
NR_B = det("Nr_b", 32)
PSK = b"covey pre-shared key"
# g^xy of a 1024-bit MODP group; a leading zero byte on purpose: it stays.
G_XY = b"\x00" + det("g^xy", 127)
G_XI = det("g^xi", 128)
G_XR = det("g^xr", 128)
CKY_I = det("CKY-I", 8)
CKY_R = det("CKY-R", 8)
SAI_B = det("SAi_b", 52)
IDII_B = bytes([1, 17, 0x01, 0xF4]) + bytes([10, 0, 0, 1])  # ID_IPV4_ADDR, UDP, 500
IDIR_B = bytes([1, 17, 0x01, 0xF4]) + bytes([10, 0, 0, 2])
LAST_P1_BLOCK_16 = det("last phase-1 block 16", 16)
LAST_P1_BLOCK_8 = det("last phase-1 block 8", 8)
M_ID = 0x8A1B2C3D
SKEYID_A = det("SKEYID_a", 32)
# Whole GDOI payloads (generic header included) and nonce bodies.
NI = bytes([5, 0, 0, 24]) + NI_B[:20]          # Nonce, next payload ID
NR = bytes([1, 0, 0, 36]) + NR_B               # Nonce, next payload SA
ID = bytes([0, 0, 0, 12, 11, 0, 0, 0]) + (1234).to_bytes(4, "big")  # ID_KEY_ID
SA = det("SA payload", 60)
GAP = bytes([0, 0, 0, 12]) + det("GAP body", 8)
SEQ = bytes([17, 0, 0, 8]) + (0).to_bytes(4, "big")
KD = det("KD payload", 96)
# GROUPKEY-PUSH: a header as it might be built (flags 0, length field not yet
# the unpadded length) and the payloads before SIG.
PUSH_HDR = det("push cookies", 16) + bytes([15, 0x10, 33, 0x00]) + bytes(4) + bytes([0, 0, 0, 0])
PUSH_PAYLOADS = SEQ + SA + KD
PUSH_UNPADDED_LEN = 28 + len(PUSH_PAYLOADS) + 4 + 256  # plus SIG header and an RSA-2048 signature


def emit(name, value):
    print(name, value.hex())


def main():
    for name, value in [("in.ni_b", NI_B), ("in.nr_b", NR_B), ("in.psk", PSK), ("in.g_xy", G_XY),
                        ("in.g_xi", G_XI), ("in.g_xr", G_XR), ("in.cky_i", CKY_I), ("in.cky_r", CKY_R),
                        ("in.sai_b", SAI_B), ("in.idii_b", IDII_B), ("in.idir_b", IDIR_B),
                        ("in.last_p1_block_16", LAST_P1_BLOCK_16), ("in.last_p1_block_8", LAST_P1_BLOCK_8),
                        ("in.m_id", M_ID.to_bytes(4, "big")), ("in.skeyid_a", SKEYID_A),
                        ("in.ni", NI), ("in.nr", NR), ("in.id", ID), ("in.sa", SA), ("in.gap", GAP),
                        ("in.seq", SEQ), ("in.kd", KD), ("in.push_hdr", PUSH_HDR),
                        ("in.push_payloads", PUSH_PAYLOADS),
                        ("in.push_unpadded_len", PUSH_UNPADDED_LEN.to_bytes(4, "big"))]:
        emit(name, value)

    for h in HASHES:
        # RFC 2409 section 5: SKEYID per authentication method.
        skeyid_psk = prf(h, PSK, NI_B + NR_B)
        skeyid_sig = prf(h, NI_B + NR_B, G_XY)
        emit("skeyid_psk." + h, skeyid_psk)
        emit("skeyid_sig." + h, skeyid_sig)
        # SKEYID_d/a/e from the signature SKEYID; the constants are single octets.
        d = prf(h, skeyid_sig, G_XY + CKY_I + CKY_R + b"\x00")
        a = prf(h, skeyid_sig, d + G_XY + CKY_I + CKY_R + b"\x01")
        e = prf(h, skeyid_sig, a + G_XY + CKY_I + CKY_R + b"\x02")
        emit("skeyid_d." + h, d)
        emit("skeyid_a." + h, a)
        emit("skeyid_e." + h, e)
        # Appendix B: the cipher key is the start of SKEYID_e, or of
        # Ka = K1 | K2 | ... (K1 = prf(SKEYID_e, 0), Kn = prf(SKEYID_e, Kn-1))
        # when SKEYID_e is too short.
        for c, (key_len, block_len) in CIPHERS.items():
            if len(e) >= key_len:
                key = e[:key_len]
            else:
                ka, k = b"", b"\x00"
                while len(ka) < key_len:
                    k = prf(h, e, k)
                    ka += k
                key = ka[:key_len]
            emit("enc_key.%s.%s" % (h, c), key)
        # HASH_I / HASH_R, keyed with SKEYID.
        emit("hash_i." + h, prf(h, skeyid_sig, G_XI + G_XR + CKY_I + CKY_R + SAI_B + IDII_B))
        emit("hash_r." + h, prf(h, skeyid_sig, G_XR + G_XI + CKY_R + CKY_I + SAI_B + IDIR_B))
        # Appendix B IVs, with the hash itself (not HMAC), cut to the block size.
        for c, (key_len, block_len) in CIPHERS.items():
            emit("phase1_iv.%s.%s" % (h, c), HASHES[h](G_XI + G_XR).digest()[:block_len])
            last = LAST_P1_BLOCK_16 if block_len == 16 else LAST_P1_BLOCK_8
            emit("phase2_iv.%s.%s" % (h, c), HASHES[h](last + M_ID.to_bytes(4, "big")).digest()[:block_len])

        # RFC 6407 section 3.2, keyed with SKEYID_a; M-ID is 4 octets.
        m = M_ID.to_bytes(4, "big")
        emit("gdoi_hash1." + h, prf(h, SKEYID_A, m + NI + ID))
        emit("gdoi_hash2." + h, prf(h, SKEYID_A, m + NI_B + NR + SA))
        emit("gdoi_hash3." + h, prf(h, SKEYID_A, m + NI_B + NR_B))
        emit("gdoi_hash3_gap." + h, prf(h, SKEYID_A, m + NI_B + NR_B + GAP))
        emit("gdoi_hash4." + h, prf(h, SKEYID_A, m + NI_B + NR_B + KD))
        emit("gdoi_hash4_seq." + h, prf(h, SKEYID_A, m + NI_B + NR_B + SEQ + KD))

        # RFC 6407 section 4: hash over "rekey" | HDR | payloads before SIG, HDR
        # with the Encryption flag (bit 0 of byte 19) set and the unpadded length.
        hdr = bytearray(PUSH_HDR)
        hdr[19] |= 0x01
        hdr[24:28] = PUSH_UNPADDED_LEN.to_bytes(4, "big")
        emit("rekey_hash." + h, HASHES[h](b"rekey" + bytes(hdr) + PUSH_PAYLOADS).digest())


if __name__ == "__main__":
    main()
