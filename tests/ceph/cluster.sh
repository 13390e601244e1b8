#!/bin/bash
# A throwaway single-node Ceph cluster for the RBD tests: one monitor and one
# bluestore OSD on a sparse file, pool `rbd` of size 1, 127.0.0.1 only, no
# systemd, no manager. Stops only the PIDs it started.
#
#   DIR=/tmp/zc-ceph MON_PORT=3300 bash tests/ceph/cluster.sh start   # ~12 s
#   export ZCTARGET_TEST_CEPH_CONF=/tmp/zc-ceph/ceph.conf               # what the tests read
#   DIR=/tmp/zc-ceph bash tests/ceph/cluster.sh stop                  # own PIDs, removes DIR
#   DIR=/tmp/zc-ceph bash tests/ceph/cluster.sh stop-mon              # SIGKILL the monitor only
#   DIR=/tmp/zc-ceph bash tests/ceph/cluster.sh start-mon             # start it again (same data)
#   DIR=/tmp/zc-ceph bash tests/ceph/cluster.sh stop-osd / start-osd  # the same for the OSD
#
# Installs ceph-mon ceph-osd ceph-common librbd-dev uuid-runtime when missing.
set -euo pipefail
DIR=$(realpath -m "${DIR:-/tmp/zctarget-ceph}")
PORT=${MON_PORT:-3300}
export CEPH_CONF="$DIR/ceph.conf"

stop() {
  for d in osd mon; do
    p=$(cat "$DIR/$d.pid" 2>/dev/null) || continue
    kill "$p" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$DIR"
}

# The monitor or the OSD alone, for the tests of a daemon lost mid-I/O:
# killed (SIGKILL, as a crash) by the PID this script recorded, and started
# again on its data folder, answering once `ceph mon stat` / `ceph tell
# osd.0 version` does.
kill_daemon() { # mon|osd
  p=$(cat "$DIR/$1.pid")
  kill -9 "$p" 2>/dev/null || true
  for _ in $(seq 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
  ! kill -0 "$p" 2>/dev/null
}
start_osd() {
  ceph-osd -f -i 0 >/dev/null 2>>"$DIR/log/stderr" &
  echo $! >"$DIR/osd.pid"
  timeout 120 bash -c 'until ceph --connect-timeout 5 tell osd.0 version >/dev/null 2>&1; do sleep 0.5; done'
}
start_mon() {
  ceph-mon -f -i a >/dev/null 2>>"$DIR/log/stderr" &
  echo $! >"$DIR/mon.pid"
  timeout 60 bash -c 'until ceph --connect-timeout 5 mon stat >/dev/null 2>&1; do sleep 0.5; done'
}

case "${1:-start}" in
  stop) stop; exit 0 ;;
  stop-mon) kill_daemon mon; exit 0 ;;
  start-mon) start_mon; exit 0 ;;
  stop-osd) kill_daemon osd; exit 0 ;;
  start-osd) start_osd; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop|stop-mon|start-mon|stop-osd|start-osd" >&2; exit 2 ;;
esac

if ! { command -v ceph-mon && command -v ceph-osd && command -v rbd && command -v uuidgen \
       && [ -e /usr/include/rbd/librbd.h ]; } >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    ceph-mon ceph-osd ceph-common librbd-dev uuid-runtime >/dev/null
fi

stop
mkdir -p "$DIR"/{mon.a,osd.0,run,log}
trap 'echo "ceph cluster failed to start; logs in $DIR/log" >&2; tail -20 "$DIR"/log/* >&2 || true; stop' ERR
FSID=$(uuidgen)
cat >"$CEPH_CONF" <<EOC
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$PORT
public network = 127.0.0.0/8
ms bind ipv6 = false
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
# A shared build machine's disk may be nearly full: the throwaway monitor
# must start anyway (the default refuses below 5 % free).
mon data avail crit = 0
osd crush chooseleaf type = 0
# A killed client's watch (and so its exclusive lock) expires in 5 s, not 30.
osd client watch timeout = 5
[mon]
mon data = $DIR/mon.\$id
[osd]
osd data = $DIR/osd.\$id
keyring = $DIR/osd.\$id/keyring
osd objectstore = bluestore
bluestore block create = true
# sparse: nothing is allocated until written
bluestore block size = 10737418240
osd memory target = 939524096
EOC
ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$DIR/keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$PORT]" --fsid "$FSID" "$DIR/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
start_mon
U=$(uuidgen)
K=$(ceph-authtool --gen-print-key)
echo "{\"cephx_secret\": \"$K\"}" >"$DIR/osd.0/new.json"
ceph osd new "$U" -i "$DIR/osd.0/new.json" >/dev/null
printf '[osd.0]\n\tkey = %s\n' "$K" >"$DIR/osd.0/keyring"
ceph-osd -i 0 --mkfs --osd-uuid "$U" 2>>"$DIR/log/stderr" >/dev/null
ceph-osd -f -i 0 >/dev/null 2>>"$DIR/log/stderr" &
echo $! >"$DIR/osd.pid"
timeout 120 bash -c "until ceph osd dump | grep -q '^osd.0 up'; do sleep 0.5; done"
ceph osd pool create rbd 8 8 >/dev/null 2>&1
rbd pool init rbd
trap - ERR
echo "ceph cluster up: CEPH_CONF=$CEPH_CONF"
