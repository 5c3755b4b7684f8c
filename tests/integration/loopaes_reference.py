#!/usr/bin/env python3
"""Independent loop-AES implementation for cross-checks (not cryptmap code; docs/loopaes.md).

Usage: loopaes_reference.py enc|dec KEYFILE IN OUT [--key-size BITS] [--hash H] [--iv-sector N]
       loopaes_reference.py key KEYFILE [--key-size BITS] [--hash H]     (prints the key, hex)

IN is read whole (a multiple of 512 bytes); its first sector gets IV sector N (default 0), so a
caller maps `open --offset O --skip S` by encrypting the volume with --iv-sector S and placing it
at O*512. The key file rules (1/64/65 lines, SHA-256/384/512 of each line cut to the key size,
first byte XOR 0x55 / 0xF4) and the data path (CBC over 512-byte sectors; single key: IV =
LE64(sector); multi-key: key sector % 64, IV = MD5 over [seed block] + plaintext[16:512] +
56-bit sector, XORed into plaintext block 0) are restated from loop-AES's and cryptsetup's
descriptions. AES comes from python3-cryptography (OpenSSL), MD5 from hashlib; only the raw MD5
state after a seed block (multi-key-v3), which hashlib hides, comes from reference_cipher.py.
"""
import argparse
import hashlib
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "crypto"))
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from reference_cipher import md5_raw_state  # noqa: E402

HASH_BY_BITS = {128: "sha256", 192: "sha384", 256: "sha512"}


def parse_keyfile(data):
    """The key lines, as cryptsetup reads them; raises ValueError with the reason."""
    if not data:
        raise ValueError("empty")
    if b"BEGIN PGP MESSAGE" in data[:100]:
        raise ValueError("gpg")
    norm = bytes(0 if b in (10, 13) else b for b in data)
    if norm[-1] != 0:
        raise ValueError("unterminated")
    lines = [x for x in norm.split(b"\0") if x]
    if norm[0] == 0:
        raise ValueError("empty first key")
    if len({len(x) for x in lines}) != 1 or len(lines) not in (1, 64, 65):
        raise ValueError("%d keys" % len(lines))
    return lines


def derive_keys(lines, bits, hash_name):
    n = bits // 8
    tweak = {64: 0x55, 65: 0xF4}.get(len(lines), 0)
    keys = []
    for line in lines:
        k = bytearray(hashlib.new(hash_name, line).digest()[:n])
        k[0] ^= tweak
        keys.append(bytes(k))
    return keys


def cbc(key, iv, data, encrypt):
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = c.encryptor() if encrypt else c.decryptor()
    return op.update(data) + op.finalize()


def multi_iv(seed, plain, sector):
    tail = plain[16:512] + struct.pack("<Q", sector)[:7]
    if seed is None:
        return hashlib.md5(tail).digest()  # 503 bytes: MD5's own padding ends the 512-byte run
    # v3: a 64-byte seed block first, the same final block (length field still 503 bytes).
    last = struct.pack("<Q", sector)[:7] + b"\x80" + struct.pack("<Q", 503 * 8)
    return md5_raw_state(seed + plain[16:496] + plain[496:512] + last)


def crypt(keys, data, first, encrypt):
    out = bytearray()
    multi = len(keys) > 1
    seed = keys[64][:16] + bytes(48) if len(keys) == 65 else None
    for i in range(0, len(data), 512):
        s = first + i // 512
        unit = data[i:i + 512]
        if not multi:
            out += cbc(keys[0], struct.pack("<QQ", s, 0), unit, encrypt)
            continue
        k = keys[s % 64]
        if encrypt:
            out += cbc(k, multi_iv(seed, unit, s), unit, True)
        else:
            p = cbc(k, bytes(16), unit, False)
            iv = multi_iv(seed, p, s)
            out += bytes(a ^ b for a, b in zip(p[:16], iv)) + p[16:]
    return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("op", choices=["enc", "dec", "key"])
    ap.add_argument("keyfile")
    ap.add_argument("inp", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--key-size", type=int, default=128)
    ap.add_argument("--hash")
    ap.add_argument("--iv-sector", type=int, default=0)
    a = ap.parse_args()
    with open(a.keyfile, "rb") as f:
        keys = derive_keys(parse_keyfile(f.read()), a.key_size, a.hash or HASH_BY_BITS[a.key_size])
    if a.op == "key":
        print(b"".join(keys).hex())
        return
    with open(a.inp, "rb") as f:
        data = f.read()
    assert len(data) % 512 == 0, "input must be whole 512-byte sectors"
    with open(a.out, "wb") as f:
        f.write(crypt(keys, data, a.iv_sector, a.op == "enc"))


if __name__ == "__main__":
    main()
