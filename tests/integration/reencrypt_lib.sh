# Shared by the reencrypt_*.sh tests (source after lib.sh): a passphrase, LUKS2 images with a
# pattern written through cryptmap, and the two independent data checks (docs/reencrypt.md).
K=$(keyfile key "reencrypt-pass")
W=$(keyfile wrong "not-the-pass")
DATA=${DATA:-$((4 << 20))}  # bytes of data after the 16 MiB header
FAST=("${CS_FAST_PBKDF2[@]}")

# One image per luksFormat flavour, the pattern written once through cryptmap; copies after that.
base_image() {  # base_image NAME [luksFormat options...]
  local img=$T/base-$1.img; shift
  truncate -s $((16 * 1024 * 1024 + DATA)) "$img"
  cryptsetup luksFormat --batch-mode --type luks2 "${FAST[@]}" --key-file "$K" "$@" "$img"
  cm_open --key-file "$K" "$img" pat
  pattern_write "$MNT/pat" 0 "$DATA" 7
  cm_close pat
}
new_image() { cp --sparse=always "$T/base-${2:-default}.img" "$1"; }  # new_image FILE [NAME]
# A script that uses detached_base only sets NO_DEFAULT_BASE=1 (a format and a pattern less).
[[ -n ${NO_DEFAULT_BASE:-} ]] || base_image default

# The pattern through cryptmap's FUSE file, then through cryptsetup's own decryption of a copy.
check_data() {  # check_data IMAGE WHAT [SEED, default 7]
  local seed=${3:-7}
  cm_open --key-file "$K" "$1" chk || fail "$2: cryptmap cannot open the reencrypted image"
  pattern_check "$MNT/chk" 0 "$DATA" "$seed" || fail "$2: data differs through cryptmap open"
  cm_close chk
  cs_decrypt "$1" "$2"
  pattern_check "$T/dec.img" 0 "$DATA" "$seed" || fail "$2: data differs after cryptsetup --decrypt"
}

# cs_decrypt IMAGE WHAT: $T/dec.img = IMAGE's data decrypted by cryptsetup itself (a single
# segment header). cryptsetup decrypts only with a detached header and data offset 0: the data
# area alone, under a fresh detached header holding the same volume key, cipher and sector size.
cs_decrypt() {
  local off vkbits cipher ss
  read -r off cipher ss < <(cryptsetup luksDump --dump-json-metadata "$1" | python3 -c 'import json,sys; s=json.load(sys.stdin)["segments"]["0"]; print(s["offset"], s["encryption"], s["sector_size"])')
  cryptsetup luksDump --dump-volume-key --batch-mode --key-file "$K" "$1" > "$T/vk.txt"
  vkbits=$(awk '/MK bits:/ {print $3}' "$T/vk.txt")
  sed -n '/MK dump:/,$p' "$T/vk.txt" | sed 's/MK dump://' | xxd -r -p > "$T/vk.bin"
  dd if="$1" of="$T/dec.img" bs=1M iflag=skip_bytes skip="$off" status=none
  rm -f "$T/dec.hdr"
  truncate -s 16M "$T/dec.hdr"
  cryptsetup luksFormat --batch-mode --type luks2 "${FAST[@]}" --key-file "$K" --header "$T/dec.hdr" \
    --volume-key-file "$T/vk.bin" --key-size "$vkbits" --cipher "$cipher" --sector-size "$ss" \
    --offset 0 "$T/dec.img" > /dev/null || fail "$2: cannot make a detached header for the check"
  cryptsetup reencrypt --decrypt --batch-mode --force-offline-reencrypt --header "$T/dec.hdr" \
    --key-file "$K" "$T/dec.img" > /dev/null || fail "$2: cryptsetup cannot decrypt the result"
  rm -f "$T/vk.bin" "$T/vk.txt"
}

not_in_reencryption() {  # the requirement and the reencrypt keyslot are gone
  cryptsetup luksDump --dump-json-metadata "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert "requirements" not in d["config"], d["config"]
assert all(k["type"] == "luks2" for k in d["keyslots"].values()), d["keyslots"]
assert len(d["segments"]) == 1, d["segments"]' || fail "$2: header still in reencryption"
}

# JSON shape: ids, types, flags, mode/direction/area type, digest bindings (values that are
# random or benchmarked are left out).
shape() {
  cryptsetup luksDump --dump-json-metadata "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
out = {"keyslots": {k: (v["type"], v.get("mode"), v.get("direction"), v["area"]["type"],
                        v["area"].get("hash"), v["area"].get("sector_size"), v.get("priority"),
                        v["key_size"], list(v))
                    for k, v in d["keyslots"].items()},
       "segments": {k: v for k, v in d["segments"].items()},
       "digests": {k: (v["keyslots"], v["segments"], list(v)) for k, v in d["digests"].items()},
       "config": d["config"]}
print(json.dumps(out, sort_keys=True, indent=1))'
}

# hot_state IMAGE: 0 when a hotzone segment is flagged in-reencryption (an interrupted step).
hot_state() { cryptsetup luksDump --dump-json-metadata "$1" | grep -q '"in-reencryption"'; }

# ms one whole run of a command takes on this machine (idle or loaded), so kills land inside one.
run_ms() { local t0; t0=$(date +%s%N); "$@" > /dev/null 2>&1 || true; echo $((($(date +%s%N) - t0) / 1000000)); }
# mode_run_cmd --encrypt|--decrypt TOOL NAME [OPTIONS...]: sets RUN to that run by cryptsetup (cs)
# or cryptmap (cm) over the detached header $T/NAME.hdr and the device $T/NAME.img (an array, so
# the caller runs the tool itself, e.g. under stop_at_sync).
mode_run_cmd() {
  local mode=$1 tool=$2 name=$3
  shift 3
  if [[ $tool == cs ]]; then
    RUN=(cryptsetup reencrypt "$mode" --batch-mode --force-offline-reencrypt "${FAST[@]}"
      --key-file "$K" --header "$T/$name.hdr" "$@" "$T/$name.img")
  else
    RUN=("$CRYPTMAP" reencrypt "$mode" --batch-mode "${FAST[@]}" --key-file "$K"
      --header "$T/$name.hdr" "$@" "$T/$name.img")
  fi
}
# stop_at_sync SIG CMD...: runs CMD and sends it SIG when it enters its Nth fsync/fdatasync, N
# random from 8 to 47 (strace's fault injection). A stop at an exact point of the hotzone
# protocol (each hotzone syncs several times: hot metadata, resilience data, data, post
# metadata), whatever this machine's speed: a delay after the start lands in the run's start-up
# on a slow machine and after its end on a fast one. STOP_AT=pwrite64,pwritev2 counts writes
# instead (resilience none syncs little; cryptmap's image store writes with pwritev2, cryptsetup
# with pwrite64). STOP_WHEN=N stops at the Nth instead (a run with fewer syncs).
stop_at_sync() {
  local sig=$1 calls=${STOP_AT:-fsync,fdatasync}
  shift
  command -v strace > /dev/null || fail "strace is needed (apt-get install strace)"
  strace -f -o /dev/null -e trace="$calls" \
    -e inject="$calls":signal="$sig":when=${STOP_WHEN:-$((8 + RANDOM % 40))} "$@" > /dev/null 2>&1 || true
}

# reenc_state IMAGE: "done" when not in reencryption, else "hot B" (a hotzone flagged
# in-reencryption starts at B) or "paused B": B bytes of data already under the new key, from
# the header's regular segments (docs/reencrypt.md §3). One luksDump; with NOLOCK=1 it does not
# wait for the image's lock (a run holds it): a header caught mid-write then prints nothing.
reenc_state() {
  cryptsetup luksDump ${NOLOCK:+--disable-locks} --dump-json-metadata "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if "requirements" not in d["config"]:
    print("done"); sys.exit(0)
segs = d["segments"]
reg = [segs[k] for k in sorted(segs, key=int) if not any(f.startswith("backup-") for f in segs[k].get("flags", []))]
hot = [s for s in reg if "in-reencryption" in s.get("flags", [])]
b = int(hot[0]["offset"]) - int(reg[0]["offset"]) if hot else (int(reg[0]["size"]) if len(reg) > 1 else 0)
print("hot" if hot else "paused", b)'
}
# boundary IMAGE: the B of reenc_state (0 when not in reencryption).
boundary() { reenc_state "$1" | awk '{print $1 == "done" ? 0 : $2}'; }
# paused_served IMAGE VOLUME WHAT: IMAGE's reencryption is paused (no hotzone flagged) with its
# boundary inside the data, and `status` of VOLUME (served in $MNT) shows that boundary. Sets
# PAUSED_AT to it.
paused_served() {
  hot_state "$1" && fail "$3: a hotzone is left flagged in-reencryption"
  PAUSED_AT=$(boundary "$1")
  ((PAUSED_AT > 0 && PAUSED_AT < DATA)) || fail "$3: boundary $PAUSED_AT is not inside the data"
  cm status --mount-dir "$MNT" "$2" > "$T/status"
  grep -q "reencryption: paused, $PAUSED_AT of $DATA bytes under the new key" "$T/status" \
    || { cat "$T/status"; fail "$3: status does not show the paused reencryption at $PAUSED_AT"; }
}

# detached_base: $T/base.img (DATA bytes of data at offset 0) under the detached LUKS2 header
# $T/base.hdr, the pattern (seed 7) written through `cryptmap open --header`; detached NAME
# copies both to $T/NAME.img and $T/NAME.hdr.
detached_base() {
  truncate -s "$DATA" "$T/base.img"
  truncate -s 16M "$T/base.hdr"
  cryptsetup luksFormat --batch-mode --type luks2 "${FAST[@]}" --key-file "$K" \
    --header "$T/base.hdr" --offset 0 "$T/base.img"
  cm_open --key-file "$K" --header "$T/base.hdr" "$T/base.img" pat
  pattern_write "$MNT/pat" 0 "$DATA" 7
  cm_close pat
}
detached() { cp --sparse=always "$T/base.img" "$T/$1.img"; cp "$T/base.hdr" "$T/$1.hdr"; }

# online_killed WHAT ARGS...: `cryptmap reencrypt ARGS` run by the daemon serving $MNT, the
# daemon killed (-9) at its Nth sync from now, N random from 8 to 47 (each hotzone syncs about 4
# times: resilience data, hot header, data, post header), or N = $KILL_WHEN when set; its dead
# mount is dropped after. The daemon's syncs must be syscalls (CRYPTMAP_IO_URING_FAIL_SETUP=1
# when it started).
online_killed() {
  local what=$1 dpid spid
  shift
  dpid=$(daemon_pid)
  [[ -n $dpid ]] || fail "$what: no daemon for $MNT"
  strace -qq -f -p "$dpid" -o /dev/null -e trace=fsync,fdatasync \
    -e inject=fsync,fdatasync:signal=KILL:when=${KILL_WHEN:-$((8 + RANDOM % 40))} &
  spid=$!
  sleep 1  # attached to every thread
  "$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --mount-dir "$MNT" "$@" \
    > "$T/kill.out" 2>&1 && fail "$what: the run finished before the kill"
  wait "$spid" 2> /dev/null || true
  for _ in $(seq 1 50); do kill -0 "$dpid" 2> /dev/null || break; sleep 0.1; done
  kill -0 "$dpid" 2> /dev/null && fail "$what: the daemon survived its kill"
  fusermount3 -u -z "$MNT" 2> /dev/null || umount -l "$MNT" 2> /dev/null || true
}
