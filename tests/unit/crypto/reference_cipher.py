#!/usr/bin/env python3
"""Independent dm-crypt sector cipher for cross-checks (not cryptmap code).

Usage: reference_cipher.py SPEC KEYHEX SECTOR_SIZE IV_LARGE(0|1) IV_OFFSET FIRST_INDEX enc|dec IN OUT
       reference_cipher.py --batch JOBS   (one job per line, the same nine fields)

Block ciphers and chain modes come from libraries that share no code with cryptmap's engines:
python3-cryptography (OpenSSL) for aes/camellia/cast5/blowfish, and libgcrypt (via ctypes) for
serpent/twofish and for XTS over non-AES ciphers. The dm-crypt rules (docs/formats.md §3.1-3.5) are
restated here independently:
  cc_sector = iv_offset + (first + k) * (sector_size / 512)
  iv_sector = cc_sector (or cc_sector >> log2(sector_size/512) with iv_large_sectors)
  multi-key: transform index = cc_sector & (keycount - 1)
IV modes: plain, plain64, plain64be, essiv:<hash>, benbi, null, eboiv, lmk (v2/v3), tcw.
des3_ede and blowfish_le (TrueCrypt's Blowfish: each 32-bit half little-endian, so the halves are
byte-reversed around standard Blowfish) come from python3-cryptography too.
A TrueCrypt CBC cascade (docs/tcrypt.md §5) is written "c1+c2[+c3]-cbc-tcw" in key order: key =
each cipher's largest key, then IV seed (largest block) + 16-byte whitening key; all block sizes
equal: outer CBC (each block through every cipher), else inner CBC (one tcw pass per cipher).
"""
import ctypes
import hashlib
import struct
import sys
import warnings
import zlib

warnings.filterwarnings("ignore")
from cryptography.hazmat.backends import default_backend  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

_gcrypt = None


def gcrypt():
    global _gcrypt
    if _gcrypt is None:
        _gcrypt = ctypes.CDLL("libgcrypt.so.20")
        _gcrypt.gcry_check_version.restype = ctypes.c_char_p
        _gcrypt.gcry_check_version(None)
    return _gcrypt


GCRY_ALGO = {("serpent", 16): 304, ("serpent", 24): 305, ("serpent", 32): 306,
             ("twofish", 16): 303, ("twofish", 32): 10,
             ("camellia", 16): 310, ("camellia", 24): 311, ("camellia", 32): 312,
             ("aes", 16): 7, ("aes", 24): 8, ("aes", 32): 9}
GCRY_MODE = {"ecb": 1, "cbc": 3, "ctr": 6, "xts": 13}


def gcry_crypt(cipher, chain, key, iv, data, encrypt):
    g = gcrypt()
    klen = len(key) // 2 if chain == "xts" else len(key)
    h = ctypes.c_void_p()
    assert g.gcry_cipher_open(ctypes.byref(h), GCRY_ALGO[(cipher, klen)], GCRY_MODE[chain], 0) == 0
    try:
        assert g.gcry_cipher_setkey(h, key, len(key)) == 0, "gcrypt setkey"
        if chain == "ctr":
            assert g.gcry_cipher_setctr(h, iv, len(iv)) == 0
        elif chain != "ecb":
            assert g.gcry_cipher_setiv(h, iv, len(iv)) == 0
        out = ctypes.create_string_buffer(len(data))
        fn = g.gcry_cipher_encrypt if encrypt else g.gcry_cipher_decrypt
        assert fn(h, out, len(data), data, len(data)) == 0, "gcrypt crypt"
        return out.raw
    finally:
        g.gcry_cipher_close(h)


def pyca_algorithm(name, key):
    if name in ("cast5", "blowfish", "des3_ede"):
        try:  # newer python3-cryptography moved the 64-bit block ciphers here
            from cryptography.hazmat.decrepit.ciphers import algorithms as old
        except ImportError:
            old = algorithms
        return {"cast5": old.CAST5, "blowfish": old.Blowfish, "des3_ede": old.TripleDES}[name](key)
    return {"aes": algorithms.AES}[name](key)


def swap_halves(data):
    return b"".join(data[i:i + 4][::-1] for i in range(0, len(data), 4))


def manual_cbc(ciphers, keys, iv, data, encrypt):
    """CBC where each block goes through every cipher (key order on encryption), by ECB."""
    bs = len(iv)
    if not encrypt:  # every block decrypts on its own: ECB over the whole buffer, then the XORs
        p = data
        for c, k in reversed(list(zip(ciphers, keys))):
            p = crypt(c, "ecb", k, None, p, False)
        return xor(p, iv + data[:len(data) - bs])
    out, prev = bytearray(), iv
    for off in range(0, len(data), bs):
        b = xor(data[off:off + bs], prev)
        for c, k in zip(ciphers, keys):
            b = crypt(c, "ecb", k, None, b, True)
        prev = b
        out += b
    return bytes(out)


def crypt(cipher, chain, key, iv, data, encrypt):
    if cipher == "blowfish_le":
        if chain == "ecb":
            return swap_halves(crypt("blowfish", "ecb", key, None, swap_halves(data), encrypt))
        return manual_cbc([cipher], [key], iv, data, encrypt)
    if cipher in ("serpent", "twofish", "camellia"):
        return gcry_crypt(cipher, chain, key, iv, data, encrypt)
    mode = {"xts": lambda: modes.XTS(iv), "cbc": lambda: modes.CBC(iv),
            "ctr": lambda: modes.CTR(iv), "ecb": lambda: modes.ECB()}[chain]()
    c = Cipher(pyca_algorithm(cipher, key), mode, backend=default_backend())
    ctx = c.encryptor() if encrypt else c.decryptor()
    return ctx.update(data) + ctx.finalize()


def block_size(cipher):
    return 8 if cipher in ("cast5", "blowfish", "blowfish_le", "des3_ede") else 16


TC_KEY = {"aes": 32, "serpent": 32, "twofish": 32, "blowfish_le": 56, "cast5": 16, "des3_ede": 24}


def tcw_iv(seed, s):
    sec = struct.pack("<Q", s & (2**64 - 1))
    return xor(seed, (sec * 2)[:len(seed)])


def tcrypt_cbc_cascade(ciphers, key, s, unit, enc):
    keys, off = [], 0
    for c in ciphers:
        keys.append(key[off:off + TC_KEY[c]])
        off += TC_KEY[c]
    region = key[off:]
    sizes = {block_size(c) for c in ciphers}
    if len(sizes) == 1:
        stages = [list(range(len(ciphers)))]
    else:
        stages = [[j] for j in range(len(ciphers))]
    for st in (stages if enc else reversed(stages)):
        bs = block_size(ciphers[st[0]])
        iv = tcw_iv(region[:bs], s)
        white = tcw_whitening(region[bs:bs + 16], s)
        cs, ks = [ciphers[j] for j in st], [keys[j] for j in st]
        if enc:
            unit = xor(manual_cbc(cs, ks, iv, unit, True), white)
        else:
            unit = manual_cbc(cs, ks, iv, xor(unit, white), False)
    return unit


# --- MD5 compression (lmk needs the raw state after whole blocks, which hashlib hides) ---
_S = [7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4
_K = [int(abs(__import__("math").sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64)]


def md5_raw_state(data):
    assert len(data) % 64 == 0
    a0, b0, c0, d0 = 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476
    for off in range(0, len(data), 64):
        m = struct.unpack("<16I", data[off:off + 64])
        a, b, c, d = a0, b0, c0, d0
        for i in range(64):
            if i < 16:
                f, g = (b & c) | (~b & d), i
            elif i < 32:
                f, g = (d & b) | (~d & c), (5 * i + 1) % 16
            elif i < 48:
                f, g = b ^ c ^ d, (3 * i + 5) % 16
            else:
                f, g = c ^ (b | ~d), (7 * i) % 16
            f = (f + a + _K[i] + m[g]) & 0xFFFFFFFF
            a, d, c = d, c, b
            b = (b + ((f << _S[i]) | (f >> (32 - _S[i])))) & 0xFFFFFFFF
        a0, b0, c0, d0 = [(x + y) & 0xFFFFFFFF for x, y in zip((a0, b0, c0, d0), (a, b, c, d))]
    return struct.pack("<4I", a0, b0, c0, d0)


def lmk_iv(seed, plaintext, s):
    buf = struct.pack("<4I", s & 0xFFFFFFFF, ((s >> 32) & 0x00FFFFFF) | 0x80000000, 4024, 0)
    return md5_raw_state((seed if seed is not None else b"") + plaintext[16:512] + buf)


def tcw_whitening(whitening_key, s):
    sec = struct.pack("<Q", s & (2**64 - 1))
    buf = bytes(a ^ b for a, b in zip(whitening_key, sec + sec))
    crcs = b"".join(struct.pack("<I", zlib.crc32(buf[i:i + 4], 0xFFFFFFFF) ^ 0xFFFFFFFF)
                    for i in range(0, 16, 4))
    w = bytes(crcs[i] ^ crcs[12 + i] for i in range(4)) + bytes(crcs[4 + i] ^ crcs[8 + i]
                                                               for i in range(4))
    return w * 64


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def parse(spec):
    head, chain, rest = (spec.split("-", 2) + ["", ""])[:3]
    keycount = 1
    if ":" in head:
        head, kc = head.split(":")
        keycount = int(kc)
    ivmode, _, ivopts = rest.partition(":")
    return head, keycount, chain, ivmode, ivopts


def simple_iv(cipher, chain, ivmode, ivopts, cipher_key, s, sector_size):
    bs = block_size(cipher)
    ivs = max(bs, 8)
    if ivmode == "plain":
        return (s & 0xFFFFFFFF).to_bytes(4, "little") + bytes(ivs - 4)
    if ivmode == "plain64":
        return (s & (2**64 - 1)).to_bytes(8, "little") + bytes(ivs - 8)
    if ivmode == "plain64be":
        return bytes(ivs - 8) + (s & (2**64 - 1)).to_bytes(8, "big")
    if ivmode == "null":
        return bytes(ivs)
    if ivmode == "benbi":
        v = ((s << (9 - (bs.bit_length() - 1))) + 1) & (2**64 - 1)
        return bytes(ivs - 8) + v.to_bytes(8, "big")
    if ivmode == "essiv":  # Linux essiv(): salt = H(the whole key of the transform)
        salt = hashlib.new(ivopts, cipher_key).digest()
        base = (s & (2**64 - 1)).to_bytes(8, "little") + bytes(ivs - 8)
        return crypt(cipher, "ecb", salt, None, base, True)
    if ivmode == "eboiv":
        base = ((s * sector_size) & (2**64 - 1)).to_bytes(8, "little") + bytes(ivs - 8)
        return crypt(cipher, "ecb", cipher_key, None, base, True)
    raise SystemExit("reference: unsupported IV mode " + ivmode)


def main():
    if sys.argv[1] == "--batch":
        for line in open(sys.argv[2]):
            if line.strip():
                run_job(line.split())
    else:
        run_job(sys.argv[1:10])


def run_job(args):
    spec, keyhex, ss, large, iv_offset, first, direction, src, dst = args
    ss, large, iv_offset, first = int(ss), int(large), int(iv_offset), int(first)
    enc = direction == "enc"
    key = bytes.fromhex(keyhex)
    cipher, keycount, chain, ivmode, ivopts = parse(spec)
    data = open(src, "rb").read()
    if "+" in cipher:
        assert chain == "cbc" and ivmode == "tcw" and ss == 512
        out = b"".join(tcrypt_cbc_cascade(cipher.split("+"), key, iv_offset + first + k,
                                          data[k * 512:(k + 1) * 512], enc)
                       for k in range(len(data) // 512))
        open(dst, "wb").write(out)
        return
    bs = block_size(cipher)
    extra = 0
    seed = None
    if ivmode == "tcw":
        extra = max(bs, 8) + 16
    elif ivmode == "lmk" and len(key) % keycount:
        extra = len(key) // (keycount + 1)
    sub = (len(key) - extra) // keycount
    if ivmode == "lmk" and extra:
        seed = key[keycount * sub:keycount * sub + 16] + bytes(48)
    tail = key[len(key) - extra:] if ivmode == "tcw" else b""
    out = bytearray()
    shift = (ss // 512).bit_length() - 1
    for k in range(len(data) // ss):
        unit = data[k * ss:(k + 1) * ss]
        cc = iv_offset + ((first + k) << shift)
        s = cc >> shift if large else cc
        tk = key[(cc & (keycount - 1)) * sub:][:sub]
        if chain == "ecb":
            out += crypt(cipher, "ecb", tk, None, unit, enc)
        elif ivmode == "lmk":
            if enc:
                out += crypt(cipher, chain, tk, lmk_iv(seed, unit, s), unit, True)
            else:
                p = crypt(cipher, chain, tk, bytes(16), unit, False)
                out += xor(p[:16], lmk_iv(seed, p, s)) + p[16:]
        elif ivmode == "tcw":
            ivs = max(bs, 8)
            sec = struct.pack("<Q", s & (2**64 - 1))
            iv = xor(tail[:ivs], (sec * 2)[:ivs])
            white = tcw_whitening(tail[ivs:ivs + 16], s)
            if enc:
                out += xor(crypt(cipher, chain, tk, iv, unit, True), white)
            else:
                out += crypt(cipher, chain, tk, iv, xor(unit, white), False)
        else:
            iv = simple_iv(cipher, chain, ivmode, ivopts, tk, s, ss)
            out += crypt(cipher, chain, tk, iv, unit, enc)
    open(dst, "wb").write(bytes(out))


if __name__ == "__main__":
    main()
