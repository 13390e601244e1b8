#!/usr/bin/env bash
# Issue #3 acceptance with the Linux kernel initiator (open-iscsi in a qemu
# guest) against zctarget: filesystem round trip, mutual CHAP, a wrong CHAP
# secret refused, a target restart the session recovers from, and live
# administration (`zctarget ctl` maps/unmaps a LUN while logged in).
#
#   tests/vm/zctarget-iscsi.sh [--engine uring|epoll] [--bin PATH] [--quick]
#
# Prints one PASS/FAIL line per scenario and "N passed, N failed" last.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/lib/daemon.sh
. tests/lib/daemon.sh
engine=uring
bin=
size=128
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --quick) size=32; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bin=$(zc_bin "$bin") || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
iqn=iqn.2026-11.io.zctarget:vm
vm=tests/vm/vm-initiator.sh

config() { # NAME [chap lines] [ADMIN_SOCKET]
  cat > "$work/$1.toml" <<CFG
[server]
admin_socket = "${3:-}"
iscsi_listen = ["127.0.0.1:3260"]
nvme_listen = []
io_engine = "$engine"

[[volumes]]
name = "v0"
path = "$work/$1.img"
size = "512MiB"

[[iscsi_targets]]
iqn = "$iqn"
luns = ["v0"]
${2:-}
CFG
}
chap='chap = { username = "zcuser", secret = "zc-secret-0001" }
mutual_chap = { username = "zctgt", secret = "zc-secret-0002" }'

scenario() { # NAME, then vm-initiator arguments
  local name=$1; shift
  zc_scenario "$name" "$work/$(printf '%s' "$name" | tr -c 'A-Za-z0-9' '_').log" \
    timeout 900 "$vm" --timeout 600 "$@"
}

config plain
scenario "filesystem ${size} MiB, no auth ($engine)" --guest-script tests/vm/guest/iscsi-fs.sh \
  --target-cmd "$bin serve --config $work/plain.toml" --wait-port 3260 \
  --env IQN=$iqn --env PORT=3260 --env SIZE_MB=$size

config chap "$chap"
scenario "filesystem 32 MiB, mutual CHAP ($engine)" --guest-script tests/vm/guest/iscsi-fs.sh \
  --target-cmd "$bin serve --config $work/chap.toml" --wait-port 3260 \
  --env IQN=$iqn --env PORT=3260 --env SIZE_MB=32 \
  --env CHAP_USER=zcuser --env CHAP_SECRET=zc-secret-0001 \
  --env MUTUAL_USER=zctgt --env MUTUAL_SECRET=zc-secret-0002

scenario "wrong CHAP secret refused ($engine)" --guest-script tests/vm/guest/iscsi-fs.sh \
  --target-cmd "$bin serve --config $work/chap.toml" --wait-port 3260 \
  --env IQN=$iqn --env PORT=3260 --env CHAP_USER=zcuser --env CHAP_SECRET=wrong-secret-99 \
  --env EXPECT_LOGIN_FAIL=1

config restart
tests/vm/targets/restartable.sh --install >/dev/null 2>&1 || true
scenario "target restart, session recovers ($engine)" --guest-script tests/vm/guest/iscsi-restart.sh \
  --target-cmd "$PWD/tests/vm/targets/restartable.sh --control-port 9999 --wait-port 3260 -- $bin serve --config $work/restart.toml" \
  --wait-port 3260 --env IQN=$iqn --env PORT=3260

config live "" "$work/live.sock"
tests/vm/targets/admin-hook.sh --install >/dev/null 2>&1 || true
scenario "live admin: LUN mapped and unmapped while logged in, rescan, session list ($engine)" \
  --guest-script tests/vm/guest/iscsi-live.sh \
  --target-cmd "$PWD/tests/vm/targets/admin-hook.sh --control-port 9999 --socket $work/live.sock -- $bin serve --config $work/live.toml" \
  --wait-port 3260 --env IQN=$iqn --env PORT=3260 --env VOL_MB=16

zc_summary
