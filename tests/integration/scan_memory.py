#!/usr/bin/env python3
"""scan_memory.py PID KEY_HEX: how often 16-byte pieces of a key occur in a process's memory.

Reads every readable mapping of PID through /proc/PID/mem (root, or the same user and a
dumpable process) and prints one number: the occurrences of each aligned 16-byte piece of the
key, summed. An AES key schedule starts with the key itself (AES-256: round keys 0 and 1), so
a key held raw or expanded is found; 16 random bytes never match by chance. Used by the
luksSuspend test to show the daemon holds no key while suspended.
"""
import re
import sys


def main() -> int:
    pid, key_hex = sys.argv[1], sys.argv[2]
    key = bytes.fromhex(key_hex)
    pieces = [key[i:i + 16] for i in range(0, len(key) - 15, 16)]
    if not pieces:
        print("key shorter than 16 bytes", file=sys.stderr)
        return 2
    found = 0
    chunk = 1 << 20
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            if not m or m.group(3)[0] != "r" or "[vvar" in line or "[vsyscall" in line:
                continue
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            tail = b""
            pos = start
            while pos < end:
                n = min(chunk, end - pos)
                try:
                    mem.seek(pos)
                    data = mem.read(n)
                except (OSError, ValueError):
                    data = b""
                if not data:
                    tail = b""
                    pos += n
                    continue
                buf = tail + data
                for p in pieces:
                    found += buf.count(p)
                tail = data[-15:]  # a piece split across two reads is counted once
                pos += n
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
