#!/usr/bin/env bash
# Issue #13 acceptance with Linux in a qemu guest: two zctarget gateways of
# one cluster export one Ceph RBD image; the guest's native NVMe multipath
# sees one namespace over two paths with their ANA states, keeps fio's
# crc32c-verified writes going while the owner gateway is killed with
# SIGKILL, sees the restarted gateway come back non-optimized, and an
# explicit failback (zctarget ctl) move ownership back under verify.
#
# Both gateways, the throwaway Ceph cluster (targets/ceph.sh) and the
# control port (targets/gateways.sh) run in the VM's network namespace.
#
#   tests/vm/zctarget-multipath.sh [--engine uring|epoll] [--bin PATH] [--backend rbd|file]
#                                  [--only nvme|iscsi]
#
#   --backend file   no Ceph: each gateway exports its own file under one
#                    volume identity (as target/tests/multipath.rs does), so
#                    only the non-owner (b) is killed and nothing fails over;
#                    checks the paths, ALUA/ANA states and the host's path
#                    choice
#
# Prints one PASS/FAIL line per scenario and "N passed, N failed" last; the
# guest prints FAILOVER_GAP_MS / FAILBACK_GAP_MS (longest time without a
# completed I/O), copied into the summary.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/lib/daemon.sh
. tests/lib/daemon.sh
engine=uring
bin=
backend=rbd
only=
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bin=$(zc_bin "$bin") || exit 1
if [ "$backend" = rbd ]; then
  tests/vm/targets/ceph.sh --install || { echo "the Ceph packages could not be installed" >&2; exit 1; }
fi
tests/vm/targets/gateways.sh --install || { echo "socat could not be installed" >&2; exit 1; }
work=$(mktemp -d)
# KEEP=1: keep the configurations and logs (printed at the end)
trap '[ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"' EXIT
nqn=nqn.2026-12.io.zctarget:vm-mpath
iqn=iqn.2026-12.io.zctarget:vm-mpath
host=nqn.2014-08.org.nvmexpress:uuid:0c0ffee0-0000-4000-8000-00000000a11e
vm=tests/vm/vm-initiator.sh

# volume ID: the shared volume as gateway ID configures it
volume() {
  if [ "$backend" = rbd ]; then
    printf '%s\n' '[[volumes]]' 'name = "v0"' 'backend = "rbd"' 'pool = "rbd"' \
      'image = "vm-mpath"' 'size = "256MiB"' "ceph_conf = \"$work/ceph/ceph.conf\"" \
      'owner = "gw-a"' 'rados_timeout_secs = 10'
  else
    printf '%s\n' '[[volumes]]' 'name = "v0"' "path = \"$work/$1.img\"" 'size = "256MiB"' \
      'owner = "gw-a"' 'identity = "shared"'
  fi
}

# gateway ID NVME_PORT ISCSI_PORT: the configuration of gateway ID
gateway() {
  cat > "$work/$1.toml" <<CFG
[server]
admin_socket = "$work/$1.sock"
iscsi_listen = ["127.0.0.1:$3"]
nvme_listen = ["127.0.0.1:$2"]
io_engine = "$engine"

[cluster]
gateway = "$1"
gateways = ["gw-a", "gw-b"]
$([ "$backend" = rbd ] && echo 'takeover_after_ms = 1000')

$(volume "$1")

[[iscsi_targets]]
iqn = "$iqn"
luns = ["v0"]

[[nvme_subsystems]]
nqn = "$nqn"
namespaces = ["v0"]
hosts = ["$host"]
CFG
}
gateway gw-a 4420 3260
gateway gw-b 4421 3261

gateways="$PWD/tests/vm/targets/gateways.sh --zctarget $bin --control-port 9999"
gateways+=" --a $work/gw-a.toml:$work/gw-a.sock --b $work/gw-b.toml:$work/gw-b.sock"
if [ "$backend" = rbd ]; then
  target="$PWD/tests/vm/targets/ceph.sh --dir $work/ceph -- $gateways"
  what="owner killed under fio verify, restart, failback"
  # failback in one call: the owner (b) releases the lock for a, which
  # takes it at its next look (the image's metadata names it)
  set -- --env VICTIM=a --env "FAILBACK=ctl b volume release v0 --to gw-a"
else
  target="$gateways"
  what="non-owner killed under fio verify, restart (file volumes)"
  set -- --env VICTIM=b
fi
# scenario NAME GUEST_SCRIPT PORT_A PORT_B, then more vm-initiator arguments
scenario() {
  local name=$1 guest=$2 pa=$3 pb=$4
  shift 4
  [ -n "${KEEP:-}" ] && set -- "$@" --keep-target-log "$work/$(basename "$guest" .sh).target.log"
  zc_scenario "$name ($engine)" "$work/$(basename "$guest" .sh).log" timeout 1200 "$vm" --timeout 900 \
    --guest-script "$guest" --wait-port "$pa" --wait-port "$pb" --wait-timeout 120 \
    --target-cmd "$target" --env PORT_A="$pa" --env PORT_B="$pb" "$@"
  grep -hE '^(FAILOVER|FAILBACK)_GAP_MS=' "$work/$(basename "$guest" .sh).log" 2>/dev/null | sed 's/^/   /'
}
if [ "$only" != iscsi ]; then
  scenario "NVMe/TCP native multipath over two gateways: $what" tests/vm/guest/nvme-multipath.sh \
    4420 4421 --env NQN=$nqn --env HOSTNQN=$host "$@"
fi
if [ "$only" != nvme ]; then
  scenario "iSCSI dm-multipath (ALUA) over two gateways: $what" tests/vm/guest/iscsi-multipath.sh \
    3260 3261 --env IQN=$iqn "$@"
fi

zc_summary
