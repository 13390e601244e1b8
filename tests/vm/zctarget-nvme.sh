#!/usr/bin/env bash
# Issue #4 acceptance with the Linux kernel host (nvme-cli in a qemu guest)
# against zctarget: discovery, connect with 2 I/O queues with and without
# digests, id-ctrl/id-ns, filesystem round trip, blkdiscard, fio verify, a
# host NQN not in `hosts` refused, a target restart the controller
# reconnects from, and live administration (`zctarget ctl` adds/removes a
# namespace while the host is connected).
#
#   tests/vm/zctarget-nvme.sh [--engine uring|epoll] [--bin PATH] [--quick]
#                             [--flavour bookworm|trixie]   (the guest; default bookworm)
#
# Prints one PASS/FAIL line per scenario and "N passed, N failed" last.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/lib/daemon.sh
. tests/lib/daemon.sh
engine=uring
bin=
size=128
fio_size=64M
flavour=${ZCTARGET_VM_FLAVOUR:-bookworm}
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --quick) size=32; fio_size=16M; shift ;;
    --flavour) flavour=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bin=$(zc_bin "$bin") || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nqn=nqn.2026-11.io.zctarget:vm
allowed=nqn.2014-08.org.nvmexpress:uuid:0c0ffee0-0000-4000-8000-00000000a11d
stranger=nqn.2014-08.org.nvmexpress:uuid:0badbad0-0000-4000-8000-000000000bad
vm=tests/vm/vm-initiator.sh

config() { # NAME [ADMIN_SOCKET]
  cat > "$work/$1.toml" <<CFG
[server]
admin_socket = "${2:-}"
iscsi_listen = []
nvme_listen = ["127.0.0.1:4420"]
io_engine = "$engine"

[[volumes]]
name = "v0"
path = "$work/$1.img"
size = "512MiB"

[[nvme_subsystems]]
nqn = "$nqn"
namespaces = ["v0"]
hosts = ["$allowed"]
CFG
}

scenario() { # NAME, then vm-initiator arguments
  local name=$1; shift
  zc_scenario "$name" "$work/$(printf '%s' "$name" | tr -c 'A-Za-z0-9' '_').log" \
    timeout 900 "$vm" --timeout 600 --flavour "$flavour" "$@"
}

config plain
scenario "discover, connect -i 2, id-ctrl/id-ns, filesystem ${size} MiB, blkdiscard, fio verify ($engine)" \
  --guest-script tests/vm/guest/nvme-fs.sh \
  --target-cmd "$bin serve --config $work/plain.toml" --wait-port 4420 \
  --env NQN=$nqn --env PORT=4420 --env HOSTNQN=$allowed --env SIZE_MB=$size \
  --env RUN_FIO=1 --env FIO_SIZE=$fio_size

config digests
scenario "connect -g -G (header and data digests), filesystem 32 MiB ($engine)" \
  --guest-script tests/vm/guest/nvme-fs.sh \
  --target-cmd "$bin serve --config $work/digests.toml" --wait-port 4420 \
  --env NQN=$nqn --env PORT=4420 --env HOSTNQN=$allowed --env SIZE_MB=32 --env DIGESTS=1

scenario "host NQN not in hosts refused ($engine)" --guest-script tests/vm/guest/nvme-fs.sh \
  --target-cmd "$bin serve --config $work/plain.toml" --wait-port 4420 \
  --env NQN=$nqn --env PORT=4420 --env HOSTNQN=$stranger --env EXPECT_CONNECT_FAIL=1

config restart
tests/vm/targets/restartable.sh --install >/dev/null 2>&1 || true
scenario "target restart, controller reconnects ($engine)" --guest-script tests/vm/guest/nvme-restart.sh \
  --target-cmd "$PWD/tests/vm/targets/restartable.sh --control-port 9999 --wait-port 4420 -- $bin serve --config $work/restart.toml" \
  --wait-port 4420 --env NQN=$nqn --env PORT=4420 --env HOSTNQN=$allowed

config live "$work/live.sock"
tests/vm/targets/admin-hook.sh --install >/dev/null 2>&1 || true
scenario "live admin: namespace added and removed while connected (AEN), controller list ($engine)" \
  --guest-script tests/vm/guest/nvme-live.sh \
  --target-cmd "$PWD/tests/vm/targets/admin-hook.sh --control-port 9999 --socket $work/live.sock -- $bin serve --config $work/live.toml" \
  --wait-port 4420 --env NQN=$nqn --env PORT=4420 --env HOSTNQN=$allowed --env VOL_MB=16

zc_summary
