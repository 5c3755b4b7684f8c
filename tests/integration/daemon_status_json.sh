#!/usr/bin/env bash
# `cryptmap status --json`: valid JSON (python3 -m json.tool), the documented field names and
# types, values that agree with cryptsetup's own view of the images (luksDump) and with the
# daemon process, one volume or all, and the inactive/no-daemon cases.
source "$(dirname "$0")/lib.sh"
# The default transport it checks follows enable_uring: nobody may change that meanwhile.
enable_uring_hold || true
MiB=$((1 << 20))
K=$(keyfile key "json passphrase")
truncate -s $((32 * MiB)) "$T/two.img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --sector-size 4096 \
  --cipher aes-xts-plain64 --key-size 512 --key-file "$K" "$T/two.img"
truncate -s $((16 * MiB)) "$T/one.img"
truncate -s $((2 * MiB)) "$T/one.hdr"
cryptsetup luksFormat --batch-mode --type luks1 "${CS_FAST_PBKDF2[@]}" --cipher aes-cbc-essiv:sha256 \
  --key-size 256 --header "$T/one.hdr" --key-file "$K" "$T/one.img"

note "no daemon: status --json prints an empty list; NAME is inactive (exit 4)"
cm status --json --mount-dir "$MNT" | python3 -m json.tool > /dev/null || fail "not JSON without daemon"
[[ $(cm status --json --mount-dir "$MNT" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["daemon_pid"], len(d["volumes"]))') == "None 0" ]] \
  || fail "no-daemon JSON: $(cm status --json --mount-dir "$MNT")"
set +e; cm status two --json --mount-dir "$MNT" > "$T/out"; rc=$?; set -e
[[ $rc == 4 ]] || fail "status --json of an inactive name: exit $rc"
python3 -m json.tool "$T/out" > /dev/null || fail "inactive status is not JSON: $(cat "$T/out")"

cm_open "$T/two.img" two --key-file "$K"
cm_open "$T/one.img" one --key-file "$K" --header "$T/one.hdr" --readonly
exec 3< "$MNT/two"

note "all volumes: valid JSON, documented fields, values match luksDump and the daemon"
cm status --json --mount-dir "$MNT" > "$T/all.json"
python3 -m json.tool "$T/all.json" > /dev/null || fail "status --json is not valid JSON: $(cat "$T/all.json")"
cryptsetup luksDump "$T/two.img" > "$T/two.dump"
cryptsetup luksDump "$T/one.hdr" > "$T/one.dump"
two_off=$(awk '/^Data segments:/{s=1} s && /offset:/{print $2; exit}' "$T/two.dump")
one_off=$(awk -F: '/^Payload offset/{gsub(/[ \t]/,"",$2); print $2}' "$T/one.dump")
python3 - "$T/all.json" "$MNT" "$T" "$two_off" "$one_off" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
mnt, t, two_off, one_off = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
assert list(d) == ["mount_dir", "daemon_pid", "volumes"], list(d)
assert d["mount_dir"] == mnt
pid = d["daemon_pid"]
cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
assert b"daemon" in cmd, cmd
fields = ["name", "path", "image", "header", "type", "cipher", "key_bits", "sector_size",
          "offset_sectors", "size_sectors", "size_bytes", "readonly", "uuid", "file_mode",
          "open_count", "daemon_pid", "flags", "suspended", "fuse_transport", "store",
          "integrity", "reencryption"]
# The default transport: io_uring when the kernel allows it (e2e_fuse_uring tests both).
try:
    uring = open("/sys/module/fuse/parameters/enable_uring").read().strip() == "Y"
except OSError:
    uring = False
v = {x["name"]: x for x in d["volumes"]}
assert sorted(v) == ["one", "two"], sorted(v)
for x in v.values():
    assert list(x) == fields, list(x)
    assert x["daemon_pid"] == pid
    assert os.stat(x["path"]).st_size == x["size_bytes"] == x["size_sectors"] * 512
    assert x["file_mode"] == "0600" and isinstance(x["uuid"], str)
    assert x["suspended"] is False, x
    assert x["integrity"] is None, x
    assert x["reencryption"] is None, x
    assert x["fuse_transport"] == ("uring" if uring else "dev"), x
    # Local files: the page cache until fdatasync; O_DSYNC writes are RWF_DSYNC.
    assert x["store"] == {"volatile_writes": True, "flush": True, "fua": True}, x
two, one = v["two"], v["one"]
assert two["path"] == mnt + "/two" and two["image"] == t + "/two.img" and two["header"] is None
assert (two["type"], two["cipher"], two["key_bits"], two["sector_size"]) == ("LUKS2", "aes-xts-plain64", 512, 4096), two
assert two["offset_sectors"] * 512 == two_off, (two, two_off)
assert two["size_bytes"] == os.path.getsize(t + "/two.img") - two_off
assert two["readonly"] is False and two["flags"] == [] and two["open_count"] == 1, two
assert one["header"] == t + "/one.hdr" and one["image"] == t + "/one.img"
assert (one["type"], one["cipher"], one["key_bits"], one["sector_size"]) == ("LUKS1", "aes-cbc-essiv:sha256", 256, 512), one
assert one["offset_sectors"] == one_off, (one, one_off)
assert one["readonly"] is True and one["flags"] == ["readonly"] and one["open_count"] == 0, one
PY
[[ $? == 0 ]] || fail "status --json fields"

note "one volume"
cm status one --json --mount-dir "$MNT" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert [x["name"] for x in d["volumes"]] == ["one"], d' \
  || fail "status one --json"
exec 3<&-
cm_close one
cm_close two
echo "PASS"
