#!/usr/bin/env bash
# Issue #12 acceptance with Linux initiators in a qemu guest against
# zctarget serving a Ceph RBD image: ext4 with checksummed files on an
# RBD-backed NVMe/TCP namespace and iSCSI LUN, verified after a remount
# (guest/*-fs.sh) and after a zctarget restart (guest/*-restart.sh).
#
# The VM's network namespace has only loopback, so each scenario starts its
# own throwaway Ceph cluster inside it (targets/ceph.sh, tests/ceph/cluster.sh)
# and runs zctarget there; a restart restarts zctarget only
# (targets/restartable.sh), the cluster and the image's data stay.
#
#   tests/vm/zctarget-rbd.sh [--engine uring|epoll] [--bin PATH] [--quick]
#
#   --quick   NVMe/TCP remount and iSCSI restart only (tests/run.sh)
#
# Prints one PASS/FAIL line per scenario and "N passed, N failed" last.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/lib/daemon.sh
. tests/lib/daemon.sh
engine=uring
bin=
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bin=$(zc_bin "$bin") || exit 1
tests/vm/targets/ceph.sh --install || { echo "the Ceph packages could not be installed" >&2; exit 1; }
tests/vm/targets/restartable.sh --install >/dev/null 2>&1 || true
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
iqn=iqn.2026-12.io.zctarget:vm-rbd
nqn=nqn.2026-12.io.zctarget:vm-rbd
allowed=nqn.2014-08.org.nvmexpress:uuid:0c0ffee0-0000-4000-8000-00000000a11d
vm=tests/vm/vm-initiator.sh

config() { # NAME: a config serving image NAME of the cluster in $work/NAME.ceph
  cat > "$work/$1.toml" <<CFG
[server]
admin_socket = ""
iscsi_listen = ["127.0.0.1:3260"]
nvme_listen = ["127.0.0.1:4420"]
io_engine = "$engine"

[[volumes]]
name = "v0"
backend = "rbd"
pool = "rbd"
image = "vm-$1"
size = "256MiB"
ceph_conf = "$work/$1.ceph/ceph.conf"

[[iscsi_targets]]
iqn = "$iqn"
luns = ["v0"]

[[nvme_subsystems]]
nqn = "$nqn"
namespaces = ["v0"]
hosts = ["$allowed"]
CFG
}

# scenario NAME CONFIG RESTARTABLE GUEST_SCRIPT PORT, then more vm-initiator arguments
scenario() {
  local name=$1 cfg=$2 restartable=$3 guest=$4 port=$5 target
  shift 5
  config "$cfg"
  target="$bin serve --config $work/$cfg.toml"
  [ "$restartable" = 1 ] &&
    target="$PWD/tests/vm/targets/restartable.sh --control-port 9999 --wait-port $port -- $target"
  zc_scenario "$name" "$work/$cfg.log" timeout 900 "$vm" --timeout 600 \
    --guest-script "$guest" --wait-port "$port" --wait-timeout 120 \
    --target-cmd "$PWD/tests/vm/targets/ceph.sh --dir $work/$cfg.ceph -- $target" "$@"
}

scenario "NVMe/TCP on RBD: ext4, checksums after remount, blkdiscard ($engine)" nvme-fs 0 \
  tests/vm/guest/nvme-fs.sh 4420 \
  --env NQN=$nqn --env PORT=4420 --env HOSTNQN=$allowed --env SIZE_MB=32
if [ "$quick" = 0 ]; then
  scenario "NVMe/TCP on RBD: checksums after a zctarget restart ($engine)" nvme-restart 1 \
    tests/vm/guest/nvme-restart.sh 4420 --env NQN=$nqn --env PORT=4420 --env HOSTNQN=$allowed
  scenario "iSCSI on RBD: ext4, checksums after remount ($engine)" iscsi-fs 0 \
    tests/vm/guest/iscsi-fs.sh 3260 --env IQN=$iqn --env PORT=3260 --env SIZE_MB=32
fi
scenario "iSCSI on RBD: checksums after a zctarget restart, session recovers ($engine)" \
  iscsi-restart 1 tests/vm/guest/iscsi-restart.sh 3260 --env IQN=$iqn --env PORT=3260

zc_summary
