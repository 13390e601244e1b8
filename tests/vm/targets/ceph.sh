#!/usr/bin/env bash
# targets/ceph.sh - a throwaway Ceph cluster (tests/ceph/cluster.sh) in the
# current network namespace, then a target command that serves RBD images
# from it; both stopped when this wrapper gets TERM/INT or the command ends.
#
#   vm-initiator.sh --target-cmd "tests/vm/targets/ceph.sh --dir DIR -- \
#        zctarget serve --config CFG" --wait-port 4420 --wait-timeout 120 ...
#
# Why inside the VM's namespace: vm-initiator runs the target command in a
# private network namespace with only loopback, where a cluster outside is
# unreachable; one started here is (its monitor on 127.0.0.1:--mon-port of
# the namespace). The cluster outlives target restarts (run the target under
# targets/restartable.sh), so the image's data does too. The config names
# DIR/ceph.conf, known before the cluster exists.
#
#   --dir DIR        the cluster's folder (removed when stopped)
#   --mon-port P     the monitor's port (default 3300)
#   --install        only install what the cluster needs and exit (the
#                    namespace has no network: run it on the host first)
set -uo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cluster="$root/tests/ceph/cluster.sh"
if [ "${1:-}" = --install ]; then
  missing=()
  for c in ceph-mon ceph-osd rbd uuidgen; do command -v "$c" >/dev/null || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] && exit 0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    ceph-mon ceph-osd ceph-common librbd-dev uuid-runtime >/dev/null
  exit $?
fi
dir="" port=3300
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --mon-port) port=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "ceph.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$dir" ] || [ $# -eq 0 ]; then echo "usage: ceph.sh --dir DIR [--mon-port P] -- CMD..." >&2; exit 2; fi
stop_cluster() { DIR="$dir" bash "$cluster" stop >/dev/null 2>&1; }
DIR="$dir" MON_PORT="$port" bash "$cluster" start >&2 || exit 1
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; stop_cluster; exit 0' TERM INT
wait "$child"
status=$?
stop_cluster
exit "$status"
