#!/usr/bin/env python3
"""Independent TrueCrypt 1.x-4.x CBC volume reader/writer for cross-checks (not cryptmap code;
docs/tcrypt.md §5, §6).

Usage: tcrypt_cbc_reference.py dec IMAGE PASS HASH CHAIN OUT [--hidden]
       tcrypt_cbc_reference.py enc IMAGE PASS HASH CHAIN IN [--hidden]   (IN over the data, in place)

CHAIN is cryptsetup's name in key order ("serpent-blowfish_le-aes"). The header key comes from
hashlib's PBKDF2 (2000 iterations, then 1000 for RIPEMD-160: TrueCrypt 1.x-4.x); the header is
decrypted stage by stage (whitening = key bytes 8..15 repeated, CBC with IV = key bytes
0..block-1, ciphers' keys from byte 32), its magic and key-area CRC-32 checked. The data: from
the header's data offset (hidden, TrueCrypt < 6: image size - hidden size - 1536) to the end of
the volume (size 0: the image's end), sector s = the header's data offset / 512 + index, each
sector through reference_cipher.py's TrueCrypt CBC (tcw IVs and whitening per stage).
"""
import hashlib
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "crypto"))
import reference_cipher as ref  # noqa: E402


def header_stages(chain):
    if len({ref.block_size(c) for c in chain}) == 1:
        return [list(range(len(chain)))]
    return [[j] for j in range(len(chain))]


def decrypt_header(chain, dk, enc):
    keys, off = [], 32
    for c in chain:
        keys.append(dk[off:off + ref.TC_KEY[c]])
        off += ref.TC_KEY[c]
    buf = enc
    for st in reversed(header_stages(chain)):
        bs = ref.block_size(chain[st[0]])
        buf = ref.xor(buf, dk[8:16] * (len(buf) // 8))
        buf = ref.manual_cbc([chain[j] for j in st], [keys[j] for j in st], dk[:bs], buf, False)
    return buf


def main():
    op, image, password, hashname, chain_name, path = sys.argv[1:7]
    hidden = "--hidden" in sys.argv[7:]
    chain = chain_name.split("-")
    raw = open(image, "rb").read()
    hoff = len(raw) - 1536 if hidden else 0
    h = raw[hoff:hoff + 512]
    for iterations in (2000, 1000):
        dk = hashlib.pbkdf2_hmac(hashname, password.encode(), h[:64], iterations, 192)
        d = decrypt_header(chain, dk, h[64:])
        if d[:4] == b"TRUE" and zlib.crc32(d[192:448]) == struct.unpack(">I", d[8:12])[0]:
            break
    else:
        sys.exit("reference: no TrueCrypt header with this passphrase, hash and chain")
    hidden_size, volume_size, mk_offset = struct.unpack(">QQQ", d[28:52])
    mk_offset = mk_offset or 512
    key_area = d[192:448]
    keys = b""
    off = 32
    for c in chain:
        keys += key_area[off:off + ref.TC_KEY[c]]
        off += ref.TC_KEY[c]
    region = key_area[:(16 if any(ref.block_size(c) == 16 for c in chain) else 8) + 16]
    data = len(raw) - hidden_size - 1536 if hidden else mk_offset
    size = hidden_size if hidden else volume_size
    end = data + size if size else len(raw) // 512 * 512

    def sector(s, unit, enc):
        if len(chain) > 1:
            return ref.tcrypt_cbc_cascade(chain, keys + region, s, unit, enc)
        bs = ref.block_size(chain[0])
        iv, white = ref.tcw_iv(region[:bs], s), ref.tcw_whitening(region[bs:bs + 16], s)
        if enc:
            return ref.xor(ref.manual_cbc(chain, [keys], iv, unit, True), white)
        return ref.manual_cbc(chain, [keys], iv, ref.xor(unit, white), False)

    first = mk_offset // 512
    if op == "dec":
        out = b"".join(sector(first + k, raw[data + 512 * k:data + 512 * k + 512], False)
                       for k in range((end - data) // 512))
        open(path, "wb").write(out)
    else:
        plain = open(path, "rb").read()
        assert len(plain) % 512 == 0 and data + len(plain) <= end
        ct = b"".join(sector(first + k, plain[512 * k:512 * k + 512], True)
                      for k in range(len(plain) // 512))
        with open(image, "r+b") as f:
            f.seek(data)
            f.write(ct)


if __name__ == "__main__":
    main()
