#!/usr/bin/env bash
# Online reencryption under a detached header (docs/reencrypt.md §10): `open --header HDR IMAGE`,
# then `reencrypt --header HDR IMAGE` of the served volume; the daemon writes the metadata and
# the resilience data into HDR, the data into IMAGE.
#  1. fio verify on the FUSE file during the whole run; HDR is then the header cryptsetup's own
#     offline run of the same reencryption leaves (luksDump shapes compared), fio's data
#     verifies after a reopen, and cryptsetup's decryption of the image equals the FUSE file;
#  2. kill -9 of the daemon at a random sync of online runs (journal), reopen (open recovers the
#     hotzone through HDR), online resume, the pattern intact;
# Online decryption and encryption (also under a detached header): reencrypt_online_decrypt.sh.
source "$(dirname "$0")/lib.sh"
DATA=$((4 << 20))  # fio's 4 regions of 1 MiB
NO_DEFAULT_BASE=1
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 240
command -v strace > /dev/null || fail "strace is needed (apt-get install strace)"
export CRYPTMAP_IO_URING_FAIL_SETUP=1  # the daemon's syncs are syscalls strace sees

ONLINE=("$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --mount-dir "$MNT")
detached_base

note "1. fio verify during an online reencryption under a detached header"
detached h
cm_open --key-file "$K" --header "$T/h.hdr" "$T/h.img" h
fio_rounds_around "$MNT/h" 0 1M "1" -- \
  "${ONLINE[@]}" --header "$T/h.hdr" --key-size 256 --hotzone-size 32k "$T/h.img"
cm status --mount-dir "$MNT" h > "$T/status"
grep -q "reencryption" "$T/status" && { cat "$T/status"; fail "1: status still shows a reencryption"; }
grep -q "keysize: 256 bits" "$T/status" || { cat "$T/status"; fail "1: status does not show the new key"; }
cryptsetup open --test-passphrase --key-file "$K" --header "$T/h.hdr" "$T/h.img" \
  || fail "1: cryptsetup does not accept the passphrase"
sha_fuse=$(sha256sum < "$MNT/h" | cut -d' ' -f1)
cm_close h
cm_open --key-file "$K" --header "$T/h.hdr" "$T/h.img" h
fio_verify_round "$MNT/h" 0 check 1M
cm_close h
# cryptsetup's offline run of the same reencryption leaves the same header (but for salts, keys;
# run once h is closed: the served copy holds the UUID's reencryption lock).
detached c
cryptsetup reencrypt --batch-mode --force-offline-reencrypt "${FAST[@]}" --key-file "$K" \
  --key-size 256 --header "$T/c.hdr" "$T/c.img" > /dev/null
diff <(shape "$T/c.hdr") <(shape "$T/h.hdr") || fail "1: the header differs from cryptsetup's after the same run"
cryptsetup reencrypt --decrypt --batch-mode --force-offline-reencrypt --key-file "$K" \
  --header "$T/h.hdr" "$T/h.img" > /dev/null || fail "1: cryptsetup cannot decrypt the result"
[[ $(sha256sum < "$T/h.img" | cut -d' ' -f1) == "$sha_fuse" ]] \
  || fail "1: cryptsetup's decryption of the image differs from what the FUSE file read"

note "2. kill -9 of the daemon at a random sync of online runs under a detached header"
detached k
cm reencrypt --init-only --batch-mode "${FAST[@]}" --key-file "$K" --key-size 256 \
  --resilience journal --header "$T/k.hdr" "$T/k.img"
kills=0 hot=0
for cycle in 1 2; do
  cm_open --key-file "$K" --header "$T/k.hdr" "$T/k.img" k || fail "2.$cycle: open (recovery) failed"
  pattern_check "$MNT/k" 0 "$DATA" 7 || fail "2.$cycle: data differs after the reopen"
  online_killed "2.$cycle" --resume-only --header "$T/k.hdr" --hotzone-size 16k "$T/k.img"
  read -r st b < <(reenc_state "$T/k.hdr")
  [[ $st == done ]] && fail "2.$cycle: the run finished before the kill"
  kills=$((kills + 1))
  [[ $st == hot ]] && hot=$((hot + 1))
done
note "2: $kills kills, $hot inside a hotzone, boundary $b of $DATA"
cm_open --key-file "$K" --header "$T/k.hdr" "$T/k.img" k || fail "2: open (recovery) failed"
"${ONLINE[@]}" --resume-only --header "$T/k.hdr" "$T/k.img" > "$T/kill.out" 2>&1 \
  || { cat "$T/kill.out"; fail "2: the online resume failed"; }
pattern_check "$MNT/k" 0 "$DATA" 7 || { tail -20 "$MNT.log"; cat "$T/kill.out"; fail "2: data differs after the online resume"; }
cm_close k
not_in_reencryption "$T/k.hdr" "2"
cryptsetup reencrypt --decrypt --batch-mode --force-offline-reencrypt --key-file "$K" \
  --header "$T/k.hdr" "$T/k.img" > /dev/null || fail "2: cryptsetup cannot decrypt the result"
pattern_check "$T/k.img" 0 "$DATA" 7 || fail "2: cryptsetup's decryption differs from the pattern"
note "PASS"
