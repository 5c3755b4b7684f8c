# A one-node Ceph cluster for tests and benchmarks, from Debian's ceph packages (ceph-mon, ceph-osd,
# ceph-common): one monitor and one memstore OSD on 127.0.0.1, auth none, pool size 1, no
# manager, an RBD pool `rbd`. Source it, then:
#   ceph_cluster_start DIR [MEMSTORE_BYTES]  writes DIR/ceph.conf, exports CEPH_CONF, starts the
#                                            daemons and waits until the pool serves I/O (exit
#                                            status 1 with a message on stderr when it cannot)
#   ceph_cluster_stop DIR                    stops the daemons by their pid files
# Ports: the monitor listens on 127.0.0.1:$CRYPTMAP_CEPH_MON_PORT (msgr2) and
# :$CRYPTMAP_CEPH_MON_PORT_V1 (msgr1). Unset, each start takes two free ports of 20000-32767
# (below the kernel's ephemeral range) and tries others when the monitor cannot have them, so
# clusters of two worktrees, or of two tests of one ctest run, do not collide. Clients find the
# monitor through DIR/ceph.conf ($CEPH_CONF); the OSD binds free ports of Ceph's 6800-7300.
# Used by tests/integration/rbd_cluster.sh, rbd_faults.sh and bench/rbd/run.sh
# (docs/network-stores.md §6.4).
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

# ceph_free_port [NOT]: a TCP port of 20000-32767 nothing listens on (and not NOT).
ceph_free_port() {
  local used p
  used=$(ss -Hltn 2>/dev/null | awk '{print $4}')
  for _ in $(seq 1 500); do
    p=$((20000 + RANDOM % 12768))
    [[ $p != "${1:-}" ]] || continue
    grep -qE "[:.]$p\$" <<< "$used" || { echo "$p"; return 0; }
  done
  return 1
}

# ceph_listens PID PORT...: process PID listens on each PORT.
ceph_listens() {
  local pid=$1 port
  shift
  for port in "$@"; do
    ss -Hltnp "sport = :$port" 2>/dev/null | grep -q "pid=$pid," || return 1
  done
}

# ceph_cluster_conf DIR BYTES V2_PORT V1_PORT: writes DIR/ceph.conf. The monitor binds the
# addresses its own section's `public addrv` names (a global `public addr` would give it the
# default ports 3300/6789 whatever `mon host` says), so the OSD's `public addr` is its own.
ceph_cluster_conf() {
  local C=$1 bytes=$2 v2=$3 v1=$4
  cat > "$C/ceph.conf" <<CONF
[global]
fsid = $(cat /proc/sys/kernel/random/uuid)
mon host = [v2:127.0.0.1:$v2,v1:127.0.0.1:$v1]
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
# A client that died keeps an image's exclusive lock until its watch expires (30 s by default);
# 10 s keeps tests that kill a lock holder short (clients ping their watches every 5 s).
osd client watch timeout = 10
[mon.a]
mon data = $C/mon
public addrv = [v2:127.0.0.1:$v2,v1:127.0.0.1:$v1]
[osd.0]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
osd data = $C/osd
osd objectstore = memstore
memstore device bytes = $bytes
osd class load list = *
osd class default list = *
CONF
}

ceph_cluster_start() {
  local C=$1 bytes=${2:-1G}
  local tool v2 v1 attempt pid fixed=${CRYPTMAP_CEPH_MON_PORT:-}${CRYPTMAP_CEPH_MON_PORT_V1:-}
  for tool in ceph-mon ceph-osd ceph rados ss; do
    command -v "$tool" > /dev/null || { echo "$tool not installed (ceph-mon ceph-osd ceph-common iproute2)" >&2; return 1; }
  done
  mkdir -p "$C/run" "$C/osd" "$C/log"
  export CEPH_CONF=$C/ceph.conf
  for attempt in 1 2 3 4 5; do
    v2=${CRYPTMAP_CEPH_MON_PORT:-$(ceph_free_port "${CRYPTMAP_CEPH_MON_PORT_V1:-}")} && v1=${CRYPTMAP_CEPH_MON_PORT_V1:-$(ceph_free_port "$v2")} ||
      { echo "no free TCP port in 20000-32767 for the Ceph monitor" >&2; return 1; }
    ceph_cluster_conf "$C" "$bytes" "$v2" "$v1"
    rm -rf "${C:?}/mon" && mkdir -p "$C/mon"
    ceph-mon --id a --mkfs --keyring /dev/null || { echo "ceph-mon --mkfs failed" >&2; return 1; }
    touch "$C/mon/keyring"
    pid=
    if ceph-mon --id a > "$C/log/mon-start.out" 2>&1; then
      # Up on these ports (not someone else's monitor that took them between the pick and the
      # bind): the process of its pid file listens on both.
      for _ in $(seq 1 100); do
        pid=$(cat "$C/run/mon.a.pid" 2>/dev/null) && ceph_listens "$pid" "$v2" "$v1" && break
        pid=
        sleep 0.1
      done
    fi
    [[ -n "$pid" ]] && break
    ceph_cluster_stop "$C"
    rm -f "$C/run/mon.a.pid"  # never kill a later owner of that pid
    if [[ -n "$fixed" || $attempt == 5 ]]; then
      echo "the Ceph monitor did not start listening on 127.0.0.1:$v2 and :$v1${fixed:+ (CRYPTMAP_CEPH_MON_PORT, CRYPTMAP_CEPH_MON_PORT_V1: are they free?)} (log: $C/log/mon.a.log)" >&2
      return 1
    fi
  done
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
