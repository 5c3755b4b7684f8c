#!/usr/bin/env bash
# --perf-same_cpu_crypt and --perf-submit_from_crypt_cpus, accepted by open and refresh as
# cryptsetup 2.6.1 accepts them (docs/formats.md §3.6: recorded and shown, the engine unchanged):
# - status prints them in cryptsetup's flags line and order (src/cryptsetup.c action_status:
#   discards same_cpu_crypt submit_from_crypt_cpus no_read_workqueue no_write_workqueue);
#   status --json lists them;
# - refresh --persistent stores them under cryptsetup's LUKS2 names (same-cpu-crypt,
#   submit-from-crypt-cpus), which cryptsetup's luksDump prints; open applies stored flags, of
#   an image in reencryption too;
# - plain volumes take them too; data written with them reads back after a reopen.
source "$(dirname "$0")/lib.sh"
watchdog 200
K=$(keyfile key "perf-one")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((16 * MiB + 8 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
flags_of() { cm status "$1" --mount-dir "$MNT" | sed -n 's/^  flags:   //p'; }
json_flags() {
  cm status --json --mount-dir "$MNT" | python3 -c '
import json, sys
print(" ".join(next(v["flags"] for v in json.load(sys.stdin)["volumes"] if v["name"] == sys.argv[1])))' "$1"
}

cm_open "$img" v --key-file "$K" --perf-same_cpu_crypt --perf-submit_from_crypt_cpus
[[ "$(flags_of v)" == "same_cpu_crypt submit_from_crypt_cpus " ]] || fail "open: flags line '$(flags_of v)'"
[[ "$(json_flags v)" == "same-cpu-crypt submit-from-crypt-cpus" ]] || fail "open: status --json flags '$(json_flags v)'"
pattern_write "$MNT/v" 0 $((2 * MiB)) 21

note "refresh: cryptsetup's order with the other flags"
cm refresh v --mount-dir "$MNT" --key-file "$K" --perf-no_write_workqueue --perf-submit_from_crypt_cpus \
  --allow-discards --perf-same_cpu_crypt --perf-no_read_workqueue
[[ "$(flags_of v)" == "discards same_cpu_crypt submit_from_crypt_cpus no_read_workqueue no_write_workqueue" ]] ||
  fail "refresh with every flag: flags line '$(flags_of v)'"
cm refresh v --mount-dir "$MNT" --key-file "$K" --perf-submit_from_crypt_cpus
[[ "$(flags_of v)" == "submit_from_crypt_cpus " ]] || fail "refresh drops the flags not given: flags line '$(flags_of v)'"

note "refresh --persistent: cryptsetup's LUKS2 names"
cm refresh v --mount-dir "$MNT" --key-file "$K" --perf-same_cpu_crypt --persistent
[[ "$(flags_of v)" == "same_cpu_crypt " ]] || fail "refresh --persistent: flags line '$(flags_of v)'"
cryptsetup luksDump "$img" | grep -Eq '^Flags:[[:space:]]+same-cpu-crypt[[:space:]]*$' ||
  fail "cryptsetup's luksDump does not show the stored flag: $(cryptsetup luksDump "$img" | grep Flags)"
cm_close v

note "open applies the stored flags; the data reads back"
cm_open "$img" v --key-file "$K" --perf-submit_from_crypt_cpus
[[ "$(flags_of v)" == "same_cpu_crypt submit_from_crypt_cpus " ]] || fail "reopen with a stored flag: flags line '$(flags_of v)'"
pattern_check "$MNT/v" 0 $((2 * MiB)) 21
cm_close v

note "open of an image in reencryption applies the stored flags too"
cryptsetup reencrypt --init-only --batch-mode --key-file "$K" "${CS_FAST_PBKDF2[@]}" "$img"
cryptsetup luksDump "$img" | grep -q online-reencrypt || fail "cryptsetup's --init-only did not start a reencryption"
cm_open "$img" v --key-file "$K"
[[ "$(flags_of v)" == "same_cpu_crypt " ]] || fail "open in reencryption: flags line '$(flags_of v)'"
pattern_check "$MNT/v" 0 $((2 * MiB)) 21
cm_close v

note "plain volumes take them"
plain=$T/plain.img
truncate -s 4M "$plain"
printf 'plain-pass' | cm_open "$plain" p --type plain --perf-same_cpu_crypt
[[ "$(flags_of p)" == "same_cpu_crypt " ]] || fail "plain: flags line '$(flags_of p)'"
cm_close p
echo "PASS"
