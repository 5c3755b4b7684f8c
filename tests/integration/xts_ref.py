#!/usr/bin/env python3
"""Independent AES-XTS-plain64 for dm-crypt layouts (python3-cryptography), used to check
cryptmap against a second implementation with the volume key cryptsetup dumps.

  xts_ref.py decrypt-check IMG DATA_OFF SECTOR_SIZE KEYHEX LENGTH SEED
      decrypts IMG[DATA_OFF : DATA_OFF+LENGTH] unit by unit and compares with pattern SEED
  xts_ref.py encrypt IMG DATA_OFF SECTOR_SIZE KEYHEX LENGTH SEED
      writes pattern SEED encrypted into IMG at DATA_OFF

IV rule (LUKS2/dm-crypt without iv_large_sectors): unit k (sector_size bytes) uses the
plain64 tweak LE64(k * sector_size / 512), i.e. counted in 512-byte sectors.
"""
import os
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pattern  # noqa: E402


def tweak(unit: int, sector_size: int) -> bytes:
    return (unit * (sector_size // 512)).to_bytes(8, "little") + bytes(8)


def main() -> int:
    cmd, img = sys.argv[1], sys.argv[2]
    data_off, ss = int(sys.argv[3]), int(sys.argv[4])
    key = bytes.fromhex(sys.argv[5])
    length, seed = int(sys.argv[6]), int(sys.argv[7])
    plain = pattern.region(seed, 0, length)
    with open(img, "r+b") as f:
        for unit in range(length // ss):
            c = Cipher(algorithms.AES(key), modes.XTS(tweak(unit, ss)))
            p = plain[unit * ss:(unit + 1) * ss]
            f.seek(data_off + unit * ss)
            if cmd == "encrypt":
                enc = c.encryptor()
                f.write(enc.update(p) + enc.finalize())
            elif cmd == "decrypt-check":
                dec = c.decryptor()
                got = dec.update(f.read(ss)) + dec.finalize()
                if got != p:
                    print(f"unit {unit} (byte {unit * ss}) differs", file=sys.stderr)
                    return 1
            else:
                print(__doc__, file=sys.stderr)
                return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
