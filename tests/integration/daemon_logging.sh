#!/usr/bin/env bash
# Where the daemon logs and at which level. The test runs in a private mount namespace whose
# /dev is a small tmpfs (the real device nodes bound in) with our own syslog receiver at
# /dev/log, so the daemon's real syslog(3) path (spdlog's syslog sink) is what is checked:
#  - spawned without a terminal (a service, a script): syslog, facility daemon, ident
#    cryptmap[PID], info and up; debug lines only with --debug; --log-level warn drops info;
#  - --log-target file: <mount-dir>.log and nothing in syslog; -f: stderr;
#  - spawned from a terminal (script -qc): <mount-dir>.log;
#  - spawned without a terminal when nothing listens on /dev/log: <mount-dir>.log.
if [[ -z "${CRYPTMAP_LOG_NS:-}" ]]; then
  exec env CRYPTMAP_LOG_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
MiB=$((1 << 20))
K=$(keyfile key "log passphrase")
truncate -s $((24 * MiB)) "$T/v.img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$T/v.img"

note "private /dev with a syslog receiver at /dev/log"
mkdir "$T/dev"
mount -t tmpfs -o mode=755 cryptmap-test-dev "$T/dev"
for n in null zero full random urandom tty fuse; do
  touch "$T/dev/$n"; mount --bind "/dev/$n" "$T/dev/$n"
done
mkdir "$T/dev/pts" "$T/dev/shm"
mount --rbind /dev/pts "$T/dev/pts"
mount -t tmpfs cryptmap-test-shm "$T/dev/shm"
ln -s pts/ptmx "$T/dev/ptmx"
ln -s /proc/self/fd "$T/dev/fd"
for i in 0 1 2; do ln -s "/proc/self/fd/$i" "$T/dev/$(sed -n "$((i + 1))p" <<< $'stdin\nstdout\nstderr')"; done
touch "$T/syslog"
python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "a") as f:
    while True:
        f.write(s.recv(65536).decode(errors="replace").rstrip("\n") + "\n"); f.flush()
' "$T/dev/log" "$T/syslog" &
for _ in $(seq 100); do [[ -S "$T/dev/log" ]] && break; sleep 0.1; done
[[ -S "$T/dev/log" ]] || fail "syslog receiver did not start"
mount --rbind "$T/dev" /dev
trap 'umount -l /dev; umount -R -l "$T/dev"; cleanup' EXIT
logger -t cryptmap-test "receiver check"
# wait_for FILE REGEX: until a line matches (the receiver writes asynchronously), at most 20 s.
wait_for() {
  for _ in $(seq 200); do grep -Eq "$2" "$1" && return 0; sleep 0.1; done
  echo "no line matching /$2/ in $1:" >&2; cat "$1" >&2; return 1
}
wait_for "$T/syslog" 'cryptmap-test: receiver check' || fail "syslog receiver gets nothing"
daemon_pid() { cm status --json --mount-dir "$MNT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["daemon_pid"])'; }
poke() {  # a connection that sends nothing: the daemon logs a warning
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.close()' "$MNT.sock"
}
# LOG_DAEMON (3 << 3) + severity: debug 7 -> <31>, info 6 -> <30>, warning 4 -> <28>.

note "no terminal, no flags: syslog, info and up, no debug"
cm_open "$T/v.img" v --key-file "$K" 2> "$T/err"
pid=$(daemon_pid)
wait_for "$T/syslog" "^<30>.*cryptmap\[$pid\]: opened $T/v.img .* as $MNT/v$" || fail "open not logged to syslog at info"
poke
wait_for "$T/syslog" "^<28>.*cryptmap\[$pid\]: control request" || fail "warning not logged to syslog at warning"
cm_close v
wait_for "$T/syslog" "^<30>.*cryptmap\[$pid\]: last volume closed" || fail "close not logged"
grep -q "cryptmap\[$pid\]: FUSE connection" "$T/syslog" && fail "debug line without --debug"
grep -q "^<31>.*cryptmap\[$pid\]" "$T/syslog" && fail "debug priority without --debug"
[[ ! -e "$MNT.log" ]] || fail "$MNT.log written although the daemon logs to syslog"
[[ ! -s "$T/err" ]] || fail "open printed on stderr: $(cat "$T/err")"

note "--debug: debug lines at LOG_DEBUG"
cm_open "$T/v.img" v --key-file "$K" --debug 2> "$T/err"
pid=$(daemon_pid)
wait_for "$T/syslog" "^<31>.*cryptmap\[$pid\]: FUSE connection: protocol" || fail "--debug: no debug line"
cm_close v

note "--log-level warn: warnings only"
cm_open "$T/v.img" v --key-file "$K" --log-level warn
pid=$(daemon_pid)
poke
wait_for "$T/syslog" "^<28>.*cryptmap\[$pid\]: control request" || fail "--log-level warn: warning missing"
grep -q "^<30>.*cryptmap\[$pid\]" "$T/syslog" && fail "--log-level warn: info line logged"
cm_close v

note "--log-target file: <mount-dir>.log (mode 0600), nothing in syslog"
cm_open "$T/v.img" v --key-file "$K" --log-target file
pid=$(daemon_pid)
cm_close v
grep -q "\[$pid\] \[info\] opened $T/v.img" "$MNT.log" || fail "file target: $(cat "$MNT.log")"
[[ $(stat -c %a "$MNT.log") == 600 ]] || fail "$MNT.log mode $(stat -c %a "$MNT.log")"
grep -q "cryptmap\[$pid\]" "$T/syslog" && fail "file target also logged to syslog"

note "-f: stderr"
"$CRYPTMAP" open "$T/v.img" v --key-file "$K" --mount-dir "$MNT" -f 2> "$T/fg.err" &
fg=$!
for _ in $(seq 200); do [[ -f "$MNT/v" ]] && break; sleep 0.1; done
[[ -f "$MNT/v" ]] || fail "foreground daemon did not serve v: $(cat "$T/fg.err")"
record_fuse_conn
cm_close v
wait "$fg" || fail "foreground daemon exit $?"
grep -q "^info: opened $T/v.img" "$T/fg.err" || fail "-f did not log to stderr: $(cat "$T/fg.err")"
grep -q "cryptmap\[$fg\]" "$T/syslog" && fail "-f also logged to syslog"

note "started from a terminal: <mount-dir>.log"
rm -f "$MNT.log"
script -qec "'$CRYPTMAP' open '$T/v.img' v --key-file '$K' --mount-dir '$MNT'" /dev/null > /dev/null
record_fuse_conn
pid=$(daemon_pid)
cm_close v
grep -q "\[$pid\] \[info\] opened" "$MNT.log" || fail "terminal start: no $MNT.log lines"
grep -q "cryptmap\[$pid\]" "$T/syslog" && fail "terminal start also logged to syslog"

note "no terminal and nothing on /dev/log: <mount-dir>.log (no line is lost)"
rm -f "$MNT.log" /dev/log
cm_open "$T/v.img" v --key-file "$K"
pid=$(daemon_pid)
cm_close v
grep -q "\[$pid\] \[info\] opened" "$MNT.log" || fail "no syslog: no $MNT.log lines"
echo "PASS"
