#!/usr/bin/env bash
# Starting cryptsetup 2.6's decryption with a data shift (`reencrypt --decrypt --header NEW-FILE
# IMAGE`) on an image the daemon serves with its header inside it (docs/reencrypt.md §10 item
# 10, §11.1), as cryptsetup starts it on an active device: the CLI exports the header to
# NEW-FILE, the daemon holds the served file's I/O, moves the data's first part over the
# image's header, commits the header in reencryption into NEW-FILE and serves the volume
# through it from then on, then runs the decryption.
#  1. fio verify on the FUSE file during the whole online start and run; status names NEW-FILE
#     during the run; the finished header has the shape cryptsetup's offline run of the same
#     decryption leaves; the image's plaintext is what the FUSE file read, and outside fio's
#     region what cryptsetup's own run of the same decryption leaves;
#  2. --init-only online: the header switched, the run paused at 0, `status` naming NEW-FILE,
#     the header's shape and every byte of the image as cryptsetup's offline --init-only leaves
#     them; then `reencrypt --resume-only --header NEW-FILE` (online) finishes it;
#  3. the daemon killed (-9) at a random one of its first syncs (the old volume's flush, the
#     move, the two header copies, the first hotzones): NEW-FILE in reencryption opens with
#     `open --header NEW-FILE`, else plain `open` (or the export, after a move) serves the data
#     as before; each is then finished online and the plaintext compared;
#  4. bad input, each leaving the image unchanged and still served: NEW-FILE an existing file,
#     NEW-FILE in a directory that does not exist, a wrong passphrase (no NEW-FILE left), and
#     --force-offline-reencrypt;
#  5. the CLI gone while the daemon prepares the start (held at its pause point,
#     CRYPTMAP_TEST_PAUSE_BEFORE_SWITCH in fs/daemon.cpp, while the test kills the CLI): the
#     daemon stops before the switch, the image is unchanged and NEW-FILE not in reencryption.
source "$(dirname "$0")/lib.sh"
NO_DEFAULT_BASE=1
DATA=$((8 << 20))  # the data of the image: 8 MiB behind a 1 MiB header (a 1 MiB shift)
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 240
command -v strace > /dev/null || fail "strace is needed (apt-get install strace)"
command -v fio > /dev/null || fail "fio is needed (apt-get install fio)"
export CRYPTMAP_IO_URING_FAIL_SETUP=1  # the daemon's syncs are syscalls strace sees
SHIFT=$((1 << 20))
ONLINE=("$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --mount-dir "$MNT")
sum() { sha256sum < "$1" | cut -d' ' -f1; }
head_sum() { head -c "$2" "$1" | sum /dev/stdin; }  # head_sum FILE BYTES
# served_header NAME: the header `status --json` names for volume NAME ("" when in the image).
served_header() {
  cm status --json --mount-dir "$MNT" "$1" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["volumes"][0]["header"] or "")'
}

# The image: LUKS2, header and keyslots in the first MiB, the pattern written through cryptmap.
truncate -s $((SHIFT + DATA)) "$T/base.img"
cryptsetup luksFormat --batch-mode --type luks2 "${FAST[@]}" --key-file "$K" --offset 2048 \
  "$T/base.img" || fail "luksFormat failed"
cm_open --key-file "$K" "$T/base.img" pat
pattern_write "$MNT/pat" 0 "$DATA" 7
cm_close pat
fresh() { cp --sparse=always "$T/base.img" "$T/$1.img"; rm -f "$T/$1.hdr"; }
# cryptsetup's own offline run of the same decryption: the plaintext and the header's shape.
fresh ref
cryptsetup reencrypt --decrypt --header "$T/ref.hdr" --batch-mode --force-offline-reencrypt \
  --key-file "$K" "$T/ref.img" > /dev/null || fail "cryptsetup's own datashift decryption failed"
ref=$(head_sum "$T/ref.img" "$DATA")
pattern_check "$T/ref.img" 0 "$DATA" 7 || fail "cryptsetup's decryption does not read the pattern"

note "1. the online start and run under fio verify"
fresh a
cm_open --key-file "$K" "$T/a.img" a --log-target file
# fio's 4 regions of 1 MiB: the moved part (converted last) and the first forward hotzones.
fio_rounds_around "$MNT/a" 0 1M "1" -- "${ONLINE[@]}" --decrypt --header "$T/a.hdr" "$T/a.img"
[[ $(served_header a) == "$T/a.hdr" ]] || fail "1: status names $(served_header a), not NEW-FILE"
cm status --mount-dir "$MNT" a > "$T/status"
grep -q "mapping: linear (decrypted)" "$T/status" \
  || { cat "$T/status"; fail "1: status does not show the linear mapping a decryption leaves"; }
sha_fuse=$(sum "$MNT/a")
# How long the file's I/O was held for the flush, the move and the header (the daemon's log).
held=$(grep -o "I/O held [0-9]* ms" "$MNT.log" | head -n 1) || fail "1: the daemon did not log the switch"
note "1: $held (fio running)"
cm_close a
[[ $(head_sum "$T/a.img" "$DATA") == "$sha_fuse" ]] || fail "1: the image's plaintext differs from what the FUSE file read"
diff <(shape "$T/ref.hdr") <(shape "$T/a.hdr") || fail "1: the finished header differs in shape from cryptsetup's"
cmp -s -i $((4 << 20)) -n $((DATA - (4 << 20))) "$T/a.img" "$T/ref.img" \
  || fail "1: the plaintext past fio's region differs from cryptsetup's decryption"
[[ $(stat -c %a "$T/a.hdr") == 600 ]] || fail "1: NEW-FILE is not mode 0600"

note "2. --init-only online, then --resume-only --header NEW-FILE"
fresh b
cm_open --key-file "$K" "$T/b.img" b
"${ONLINE[@]}" --decrypt --header "$T/b.hdr" --init-only "$T/b.img" > "$T/run.out" 2>&1 \
  || { cat "$T/run.out"; fail "2: the online --init-only failed"; }
[[ $(reenc_state "$T/b.hdr") == paused* ]] || fail "2: NEW-FILE is not paused: $(reenc_state "$T/b.hdr")"
cm status --mount-dir "$MNT" b > "$T/status"
grep -q "header:  $T/b.hdr" "$T/status" || { cat "$T/status"; fail "2: status does not name NEW-FILE"; }
grep -q "reencryption: paused, 0 of $DATA bytes" "$T/status" || { cat "$T/status"; fail "2: status does not show the paused decryption"; }
[[ $(sum "$MNT/b") == "$ref" ]] || fail "2: the served data changed at the switch"
# cryptsetup's own --init-only of the same image: the same header shape, every byte of the image.
fresh ci
cryptsetup reencrypt --decrypt --header "$T/ci.hdr" --init-only --batch-mode \
  --force-offline-reencrypt --key-file "$K" "$T/ci.img" > /dev/null || fail "2: cryptsetup --init-only failed"
diff <(shape "$T/ci.hdr") <(shape "$T/b.hdr") || fail "2: the header differs in shape from cryptsetup's --init-only"
cmp -s "$T/ci.img" "$T/b.img" || fail "2: the image differs from what cryptsetup's --init-only leaves"
"${ONLINE[@]}" --resume-only --header "$T/b.hdr" "$T/b.img" > "$T/run.out" 2>&1 \
  || { cat "$T/run.out"; fail "2: the online resume through NEW-FILE failed"; }
[[ $(sum "$MNT/b") == "$ref" ]] || fail "2: the served data differs after the run"
cm_close b
[[ $(head_sum "$T/b.img" "$DATA") == "$ref" ]] || fail "2: the image's plaintext differs from cryptsetup's"
diff <(shape "$T/ref.hdr") <(shape "$T/b.hdr") || fail "2: the finished header differs in shape from cryptsetup's"

note "3. the daemon killed at one of its first syncs of the online start"
# The start syncs the old volume's flush, the move and the two header copies (each its own
# sync); a hotzone then syncs about 5 times. Kills at each of the first 4 syncs, then at two
# random ones of the first hotzones.
switched=0 before=0 cycle=0
for when in 1 2 3 4 $((5 + RANDOM % 8)) $((5 + RANDOM % 8)); do
  cycle=$((cycle + 1))
  fresh k
  cm_open --key-file "$K" "$T/k.img" k
  KILL_WHEN=$when online_killed "3.$cycle" --decrypt --header "$T/k.hdr" "$T/k.img"
  st=$([[ -e $T/k.hdr ]] && reenc_state "$T/k.hdr" 2> /dev/null || echo none)
  note "3.$cycle: killed at sync $when, NEW-FILE: $st"
  if [[ $st == hot* || $st == paused* ]]; then
    switched=$((switched + 1))
    cm_open --key-file "$K" --header "$T/k.hdr" "$T/k.img" k || fail "3.$cycle: open --header NEW-FILE after the switch failed"
    [[ $(sum "$MNT/k") == "$ref" ]] || fail "3.$cycle: the data differs after the switch and the kill"
    "${ONLINE[@]}" --resume-only --header "$T/k.hdr" "$T/k.img" > "$T/run.out" 2>&1 \
      || { cat "$T/run.out"; fail "3.$cycle: the online resume failed"; }
    cm_close k
    [[ $(head_sum "$T/k.img" "$DATA") == "$ref" ]] || fail "3.$cycle: the plaintext differs from cryptsetup's"
  else
    before=$((before + 1))
    # Not switched: the image opens with its own header (or, once the move overwrote it, with
    # the export in NEW-FILE, which describes the data at the shift).
    if cm_open --key-file "$K" "$T/k.img" k 2> "$T/open.err"; then :; else
      [[ -e $T/k.hdr ]] || { cat "$T/open.err"; fail "3.$cycle: the image does not open and there is no NEW-FILE"; }
      cm_open --key-file "$K" --header "$T/k.hdr" "$T/k.img" k || fail "3.$cycle: neither header opens the image"
    fi
    [[ $(sum "$MNT/k") == "$ref" ]] || fail "3.$cycle: the data differs after a kill before the switch"
    cm_close k
  fi
done
((switched >= 1 && before >= 1)) || fail "3: $switched kills after the switch, $before before it"
note "3: $switched kills after the switch, $before before it"

note "4. bad input: the image unchanged and still served"
fresh p
cm_open --key-file "$K" "$T/p.img" p
before=$(sum "$T/p.img")
echo "not a header" > "$T/exists.hdr"
expect_exit 1 "already exists" -- \
  cm reencrypt --decrypt --header "$T/exists.hdr" --batch-mode --key-file "$K" --mount-dir "$MNT" "$T/p.img"
[[ $(cat "$T/exists.hdr") == "not a header" ]] || fail "4: an existing NEW-FILE was changed"
set +e
cm reencrypt --decrypt --header "$T/nodir/p.hdr" --batch-mode --key-file "$K" --mount-dir "$MNT" \
  "$T/p.img" > "$T/out" 2>&1
rc=$?
set -e
((rc != 0)) || fail "4: NEW-FILE in a missing directory was accepted"
grep -q "Cannot create the header file $T/nodir/p.hdr" "$T/out" || { cat "$T/out"; fail "4: no clear error for a missing directory"; }
grep -q "still served" "$T/out" || { cat "$T/out"; fail "4: the error does not say the image is still served"; }
expect_exit 2 "No key available" -- \
  cm reencrypt --decrypt --header "$T/p.hdr" --batch-mode --key-file "$W" --mount-dir "$MNT" "$T/p.img"
[[ ! -e $T/p.hdr ]] || fail "4: a wrong passphrase left NEW-FILE"
expect_exit 5 "force-offline-reencrypt" -- \
  cm reencrypt --decrypt --header "$T/p.hdr" --force-offline-reencrypt --batch-mode \
  --key-file "$K" --mount-dir "$MNT" "$T/p.img"
[[ ! -e $T/p.hdr ]] || fail "4: --force-offline-reencrypt left NEW-FILE"
[[ $(sum "$MNT/p") == "$ref" ]] || fail "4: the served data changed"
cm status --mount-dir "$MNT" p > "$T/status"
grep -q "header:" "$T/status" && { cat "$T/status"; fail "4: status names a detached header"; }
cm_close p
[[ $(sum "$T/p.img") == "$before" ]] || fail "4: a refused start changed the image"

note "5. the CLI gone while the daemon prepares the start: nothing written, nothing switched"
fresh s
mkfifo "$T/pause.fifo"
# A fresh daemon (the last close ends the previous one), started with the pause point set.
for _ in $(seq 1 50); do [[ -z $(daemon_pid) ]] && break; sleep 0.1; done
[[ -z $(daemon_pid) ]] || fail "5: the previous daemon is still running"
CRYPTMAP_TEST_PAUSE_BEFORE_SWITCH=$T/pause.fifo cm_open --key-file "$K" "$T/s.img" s
before=$(sum "$T/s.img")
"${ONLINE[@]}" --decrypt --header "$T/s.hdr" "$T/s.img" > "$T/run.out" 2>&1 &
cli=$!
exec 7> "$T/pause.fifo"  # returns once the daemon waits at its pause point, the start prepared
kill -KILL "$cli"
wait "$cli" 2> /dev/null || true  # reaped: its end of the control connection is closed
exec 7>&-                         # the daemon goes on
# The run ends on its own (a close is refused while it runs).
closed=0
for _ in $(seq 1 100); do
  if cm_close s 2> "$T/close.err"; then closed=1; break; fi
  grep -q "online reencryption runs on it" "$T/close.err" || { cat "$T/close.err"; fail "5: close failed"; }
  sleep 0.1
done
((closed)) || fail "5: the run did not end (close refused throughout)"
[[ $(sum "$T/s.img") == "$before" ]] || fail "5: the image changed although the CLI had left before the switch"
[[ $(reenc_state "$T/s.hdr") == done ]] || fail "5: NEW-FILE is in reencryption: $(reenc_state "$T/s.hdr")"
cm_open --key-file "$K" "$T/s.img" s || fail "5: the image does not open with its own header"
[[ $(sum "$MNT/s") == "$ref" ]] || fail "5: the data differs"
cm_close s
note "PASS"
