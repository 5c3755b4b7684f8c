# A one-node Ceph cluster for tests and benchmarks, from Debian's ceph packages (ceph-mon, ceph-osd,
# ceph-common): one monitor and one memstore OSD on 127.0.0.1, auth none, pool size 1, no
# manager, an RBD pool `rbd`. Source it, then:
#   ceph_cluster_start DIR [MEMSTORE_BYTES]  writes DIR/ceph.conf, exports CEPH_CONF, starts the
#                                            daemons and waits until the pool serves I/O (exit
#                                            status 1 with a message on stderr when it cannot)
#   ceph_cluster_stop DIR                    stops the daemons by their pid files
# Used by tests/integration/rbd_cluster.sh and bench/rbd/run.sh (docs/network-stores.md §6.4).
ceph_cluster_stop() {
  local C=$1 f pid
  for f in "$C"/run/osd.0.pid "$C"/run/mon.a.pid; do
    [[ -f "$f" ]] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

ceph_cluster_start() {
  local C=$1 bytes=${2:-1G}
  local tool
  for tool in ceph-mon ceph-osd ceph rados; do
    command -v "$tool" > /dev/null || { echo "$tool not installed (ceph-mon ceph-osd ceph-common)" >&2; return 1; }
  done
  mkdir -p "$C/run" "$C/mon" "$C/osd" "$C/log"
  # The monitor's default ports (msgr2 3300, v1 6789) on 127.0.0.1; the OSD takes ports from
  # 6800-7300. A monitor given another port in its address still binds the defaults here.
  if ss -ltn 2>/dev/null | grep -qE '127.0.0.1:(3300|6789) '; then
    echo "another Ceph monitor listens on 127.0.0.1:3300/6789; stop it first" >&2
    return 1
  fi
  export CEPH_CONF=$C/ceph.conf
  cat > "$CEPH_CONF" <<CONF
[global]
fsid = $(cat /proc/sys/kernel/random/uuid)
mon host = 127.0.0.1
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
run dir = $C/run
pid file = $C/run/\$name.pid
admin socket = $C/run/\$name.asok
log file = $C/log/\$name.log
mon warn on pool no redundancy = false
mon data avail crit = 0
ms bind ipv4 = true
ms bind ipv6 = false
public addr = 127.0.0.1
# A client that died keeps an image's exclusive lock until its watch expires (30 s by default);
# 10 s keeps tests that kill a lock holder short (clients ping their watches every 5 s).
osd client watch timeout = 10
[mon.a]
mon data = $C/mon
mon addr = 127.0.0.1
[osd.0]
osd data = $C/osd
osd objectstore = memstore
memstore device bytes = $bytes
osd class load list = *
osd class default list = *
CONF
  ceph-mon --id a --mkfs --keyring /dev/null || { echo "ceph-mon --mkfs failed" >&2; return 1; }
  touch "$C/mon/keyring"
  ceph-mon --id a || { echo "ceph-mon did not start (log: $C/log/mon.a.log)" >&2; return 1; }
  timeout 60 ceph osd create > /dev/null || { echo "the monitor does not answer" >&2; return 1; }
  timeout 60 ceph osd crush add osd.0 1 root=default host=localhost > /dev/null 2>&1
  if ! ceph-osd --id 0 --mkfs > "$C/log/osd-mkfs.out" 2>&1; then
    cat "$C/log/osd-mkfs.out" >&2
    echo "ceph-osd --mkfs failed" >&2
    return 1
  fi
  ceph-osd --id 0 > "$C/log/osd-start.out" 2>&1 || { echo "ceph-osd did not start" >&2; return 1; }
  timeout 60 ceph osd pool create rbd 8 > /dev/null 2>&1
  # `rbd pool init` waits for a manager (none runs here): enable the application directly.
  timeout 60 ceph osd pool application enable rbd rbd > /dev/null 2>&1
  echo x > "$C/probe"
  timeout 120 rados -p rbd put probe "$C/probe" || { echo "the cluster does not serve I/O" >&2; return 1; }
}
