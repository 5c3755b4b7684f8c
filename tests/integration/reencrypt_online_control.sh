#!/usr/bin/env bash
# Online reencryption (docs/reencrypt.md §10) runs on a thread of its own in the daemon, which
# holds the image's metadata lock for the run:
#  1. while it runs, `status` answers at once and shows it running (text and --json) with the
#     boundary moving, another image opens and closes in the same daemon, a second reencrypt
#     of the volume and `close` are refused (exit 5, naming how to stop the run); SIGINT of
#     the CLI then stops it at a hotzone boundary.
#  2. kill -9 of the CLI: the daemon stops the run at a hotzone boundary before anyone else gets
#     the image's metadata lock (flock): inside that lock the header is paused, no hotzone is
#     flagged, and `status` no longer shows the run.
#  3. `close --force` stops the run at a hotzone boundary and closes; the header is paused.
#  4. SIGTERM of the daemon stops the run at a hotzone boundary; the header is paused; open and
#     an online resume finish it, and the data reads back through cryptmap and cryptsetup.
source "$(dirname "$0")/lib.sh"
DATA=$((32 << 20))  # 8192 hotzones of 4 KiB: a run outlasts status polls and kill delays on a fast machine too
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 200

ONLINE=("$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --mount-dir "$MNT")

# wait_running NAME PID: waits until `status` shows the run of NAME (each status must answer
# within 5 s: the run must not occupy the control thread); sets RUN_AT to its boundary.
wait_running() {
  local i
  for i in $(seq 1 300); do
    timeout 5 "$CRYPTMAP" status --mount-dir "$MNT" "$1" > "$T/status" \
      || fail "status of $1 did not answer within 5 s during the run"
    if grep -q "reencryption: running" "$T/status"; then
      RUN_AT=$(sed -n 's/.*reencryption: running, \([0-9]*\) of.*/\1/p' "$T/status")
      return 0
    fi
    kill -0 "$2" 2>/dev/null || { cat "$T/run.out"; fail "the run of $1 ended before status showed it"; }
    sleep 0.1
  done
  fail "status never showed the run of $1"
}
# start_run IMAGE NAME: opens IMAGE (in reencryption) as NAME and starts an online run in 4 KiB
# hotzones (long enough to act during it); sets PID to the CLI's.
start_run() {
  cm_open --key-file "$K" "$1" "$2"
  "${ONLINE[@]}" --resume-only --hotzone-size 4k "$1" > "$T/run.out" 2>&1 &
  PID=$!
  wait_running "$2" "$PID"
}
# stopped_run PID WHAT: the CLI exits 1 with the interrupted message.
stopped_run() {
  local rc=0
  wait "$1" || rc=$?
  [[ $rc -eq 1 ]] || { cat "$T/run.out"; fail "$2: the CLI exited $rc, expected 1 (interrupted)"; }
  grep -q "was interrupted" "$T/run.out" || { cat "$T/run.out"; fail "$2: no 'interrupted' message"; }
}

note "1. status, another open, refusals while the run goes on"
new_image "$T/a.img"
new_image "$T/b.img"
cm reencrypt --init-only --batch-mode "${FAST[@]}" --key-file "$K" --key-size 256 "$T/a.img"
start_run "$T/a.img" a
first=$RUN_AT
timeout 5 "$CRYPTMAP" status --json --mount-dir "$MNT" a > "$T/status.json" \
  || fail "1: status --json did not answer within 5 s"
python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))["volumes"][0]
r = v["reencryption"]
assert r and r["state"] == "running" and r["total_bytes"] == int(sys.argv[2]), r' \
  "$T/status.json" "$DATA" || { cat "$T/status.json"; fail "1: status --json does not show the run"; }
timeout 30 "$CRYPTMAP" open --mount-dir "$MNT" --key-file "$K" "$T/b.img" b \
  || fail "1: open of another image waited for the run or failed"
pattern_check "$MNT/b" 0 "$DATA" 7 || fail "1: the other volume reads wrong data"
timeout 30 "$CRYPTMAP" close --mount-dir "$MNT" b || fail "1: close of the other volume failed"
expect_exit 5 "already running" -- "${ONLINE[@]}" --resume-only "$T/a.img"
expect_exit 5 "online reencryption runs on it.*--force" -- "$CRYPTMAP" close --mount-dir "$MNT" a
expect_exit 5 "already running" -- "$CRYPTMAP" luksSuspend --mount-dir "$MNT" a
pattern_check "$MNT/a" 0 "$DATA" 7 || fail "1: data differs during the run"
wait_running a "$PID"
((RUN_AT > first)) || fail "1: the boundary did not move ($first, then $RUN_AT)"
while kill -INT "$PID" 2>/dev/null; do sleep 0.2; done
stopped_run "$PID" "1"
paused_served "$T/a.img" a "1: after SIGINT"

note "2. kill -9 of the CLI: the daemon stops before the metadata lock is free"
kill_ms=$((200 + RANDOM % 300))
"${ONLINE[@]}" --resume-only --hotzone-size 4k "$T/a.img" > "$T/run.out" 2>&1 &
PID=$!
wait_running a "$PID"
sleep "0.$(printf %03d "$kill_ms")"
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
# Inside the image's lock (the one cryptsetup takes): the run must be over and the header paused.
flock -x -w 30 "$T/a.img" bash -c '
  "$1" status --mount-dir "$2" a > "$3/status.locked"
  cryptsetup luksDump --disable-locks --dump-json-metadata "$4" > "$3/dump.locked"' \
  _ "$CRYPTMAP" "$MNT" "$T" "$T/a.img" || fail "2: the image's lock was not free within 30 s"
grep -q "reencryption: paused" "$T/status.locked" \
  || { cat "$T/status.locked"; fail "2: the lock was free while the run still went on"; }
grep -q '"in-reencryption"' "$T/dump.locked" && fail "2: the lock was free with a hotzone flagged"
paused_served "$T/a.img" a "2: after kill -9 of the CLI"
((PAUSED_AT > RUN_AT)) || fail "2: the boundary did not move ($RUN_AT, then $PAUSED_AT)"
pattern_check "$MNT/a" 0 "$DATA" 7 || fail "2: data differs after the CLI was killed"

note "3. close --force stops the run at a hotzone boundary and closes"
"${ONLINE[@]}" --resume-only --hotzone-size 4k "$T/a.img" > "$T/run.out" 2>&1 &
PID=$!
wait_running a "$PID"
timeout 30 "$CRYPTMAP" close --force --mount-dir "$MNT" a || fail "3: close --force failed"
stopped_run "$PID" "3"
grep -q "the daemon stopped it" "$T/run.out" || { cat "$T/run.out"; fail "3: the CLI does not say who stopped it"; }
[[ -e "$MNT/a" ]] && fail "3: $MNT/a is still there after close --force"
hot_state "$T/a.img" && fail "3: close --force left a hotzone flagged"
read -r st b < <(reenc_state "$T/a.img")
[[ $st == paused ]] && ((b >= PAUSED_AT && b < DATA)) \
  || fail "3: after close --force the header is '$st $b' (expected paused at or beyond $PAUSED_AT)"

note "4. SIGTERM of the daemon stops the run; open and an online resume finish it"
start_run "$T/a.img" a
dpid=$(daemon_pid)
kill -TERM "$dpid"
for _ in $(seq 1 300); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$dpid" 2>/dev/null && fail "4: the daemon did not exit within 30 s of SIGTERM"
stopped_run "$PID" "4"
hot_state "$T/a.img" && fail "4: SIGTERM left a hotzone flagged"
read -r st b < <(reenc_state "$T/a.img")
[[ $st == paused ]] || fail "4: after SIGTERM the header is '$st $b'"
cm_open --key-file "$K" "$T/a.img" a
"${ONLINE[@]}" --resume-only --hotzone-size 1m "$T/a.img" > /dev/null \
  || fail "4: the online resume after SIGTERM failed"
cm_close a
not_in_reencryption "$T/a.img" "4"
check_data "$T/a.img" "4"
note "PASS"
