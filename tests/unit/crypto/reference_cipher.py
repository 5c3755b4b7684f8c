#!/usr/bin/env python3
"""Independent dm-crypt sector cipher for cross-checks (python3-cryptography, not cryptmap code).

Usage: reference_cipher.py SPEC KEYHEX SECTOR_SIZE IV_LARGE(0|1) IV_OFFSET FIRST_INDEX enc|dec IN OUT

Implements the dm-crypt rules from formats.md §3.1-3.5 on its own:
  cc_sector = iv_offset + (first + k) * (sector_size / 512)
  iv_sector = cc_sector (or cc_sector >> log2(sector_size/512) with iv_large_sectors)
  multi-key: transform index = cc_sector & (keycount - 1)
Supported: cipher aes/camellia/cast5/blowfish, modes xts/cbc/ecb/ctr,
IV modes plain, plain64, plain64be, essiv:<hash>, benbi, null, eboiv.
"""
import hashlib
import sys

from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def algorithm(name, key):
    if name == "aes":
        return algorithms.AES(key)
    if name == "camellia":
        return algorithms.Camellia(key)
    if name == "cast5":
        return algorithms.CAST5(key)
    if name == "blowfish":
        return algorithms.Blowfish(key)
    raise SystemExit("reference: unsupported cipher " + name)


def parse(spec):
    head, chain, rest = (spec.split("-", 2) + ["", ""])[:3]
    keycount = 1
    if ":" in head:
        head, kc = head.split(":")
        keycount = int(kc)
    ivmode, _, ivopts = rest.partition(":")
    return head, keycount, chain, ivmode, ivopts


def block_size(cipher):
    return 8 if cipher in ("cast5", "blowfish") else 16


def ecb_encrypt(cipher, key, block):
    e = Cipher(algorithm(cipher, key), modes.ECB(), backend=default_backend()).encryptor()
    return e.update(block) + e.finalize()


def make_iv(cipher, ivmode, ivopts, key, iv_sector, sector_size):
    bs = block_size(cipher)
    ivs = max(bs, 8)
    if ivmode == "plain":
        return (iv_sector & 0xFFFFFFFF).to_bytes(4, "little") + bytes(ivs - 4)
    if ivmode == "plain64":
        return (iv_sector & (2**64 - 1)).to_bytes(8, "little") + bytes(ivs - 8)
    if ivmode == "plain64be":
        return bytes(ivs - 8) + (iv_sector & (2**64 - 1)).to_bytes(8, "big")
    if ivmode == "null":
        return bytes(ivs)
    if ivmode == "benbi":
        shift = 9 - (bs.bit_length() - 1)
        v = ((iv_sector << shift) + 1) & (2**64 - 1)
        return bytes(ivs - 8) + v.to_bytes(8, "big")
    if ivmode == "essiv":
        salt = hashlib.new(ivopts, key).digest()
        base = (iv_sector & (2**64 - 1)).to_bytes(8, "little") + bytes(ivs - 8)
        return ecb_encrypt(cipher, salt, base)
    if ivmode == "eboiv":
        base = ((iv_sector * sector_size) & (2**64 - 1)).to_bytes(8, "little") + bytes(ivs - 8)
        return ecb_encrypt(cipher, key, base)
    raise SystemExit("reference: unsupported IV mode " + ivmode)


def main():
    spec, keyhex, ss, large, iv_offset, first, direction, src, dst = sys.argv[1:10]
    ss, large, iv_offset, first = int(ss), int(large), int(iv_offset), int(first)
    key = bytes.fromhex(keyhex)
    cipher, keycount, chain, ivmode, ivopts = parse(spec)
    sub = len(key) // keycount
    data = open(src, "rb").read()
    out = bytearray()
    shift = (ss // 512).bit_length() - 1
    for k in range(len(data) // ss):
        unit = data[k * ss:(k + 1) * ss]
        cc = iv_offset + ((first + k) << shift)
        iv_sector = cc >> shift if large else cc
        tk = key[(cc & (keycount - 1)) * sub:][:sub]
        if chain == "xts":
            iv = make_iv(cipher, ivmode, ivopts, tk, iv_sector, ss)
            mode = modes.XTS(iv)
        elif chain == "cbc":
            mode = modes.CBC(make_iv(cipher, ivmode, ivopts, tk, iv_sector, ss))
        elif chain == "ctr":
            mode = modes.CTR(make_iv(cipher, ivmode, ivopts, tk, iv_sector, ss))
        elif chain == "ecb":
            mode = modes.ECB()
        else:
            raise SystemExit("reference: unsupported chain mode " + chain)
        c = Cipher(algorithm(cipher, tk), mode, backend=default_backend())
        ctx = c.encryptor() if direction == "enc" else c.decryptor()
        out += ctx.update(unit) + ctx.finalize()
    open(dst, "wb").write(bytes(out))


if __name__ == "__main__":
    main()
