#!/usr/bin/env bash
# libiscsi's MultipathIO suite across two zctarget gateways of a [cluster]
# exporting one RBD image (issue #13): iscsi-test-cu gets one URL per
# gateway (the owner's first, then the follower's).
#
#   tests/iscsi/multipath.sh --ceph-conf PATH [--bin PATH]
#
# Gate: every test's outcome is the one tests/iscsi/multipath-expected.txt
# lists (with its reason), the owner keeps its lock throughout (no takeover,
# no fencing: the suite must not disturb ownership), and both gateways stop
# with their buffer pools intact. The image is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib/daemon.sh
. tests/lib/daemon.sh

bin=
ceph_conf=
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --ceph-conf) ceph_conf=$(realpath "$2"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$ceph_conf" ] || { echo "--ceph-conf is required" >&2; exit 2; }
ZC_BIN=$(zc_bin "$bin")

work=$(mktemp -d)
image="zc-mpio-$$"
pids=()
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local p
  for p in "${pids[@]}"; do zc_stop_pid "$p" TERM 30 || true; done
  CEPH_CONF="$ceph_conf" timeout 60 rbd rm --no-progress "rbd/$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

iqn=iqn.2026-12.io.zctarget:mpio
# The peer link: each gateway's address (free ports picked now: each
# gateway must know the other's before it starts) and the shared secret.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
peer_a=$(free_port)
peer_b=$(free_port)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/peer.secret"
declare -A port log
for gw in gw-a gw-b; do
  cat > "$work/$gw.toml" <<CFG
[server]
admin_socket = ""
iscsi_listen = ["127.0.0.1:0"]
nvme_listen = []
reactors = 1
buffer_pool = "16MiB"
poison_on_release = true

[cluster]
gateway = "$gw"
gateways = ["gw-a", "gw-b"]
takeover_after_ms = 1000
peers = { gw-a = "127.0.0.1:$peer_a", gw-b = "127.0.0.1:$peer_b" }
peer_secret_file = "$work/peer.secret"

[[volumes]]
name = "shared"
backend = "rbd"
pool = "rbd"
image = "$image"
size = "64MiB"
ceph_conf = "$ceph_conf"
owner = "gw-a"

[[iscsi_targets]]
iqn = "$iqn"
luns = ["shared"]
CFG
  zc_start "$work/$gw.toml" "$work/$gw.log"
  pids+=("$ZC_PID")
  zc_wait_listening iscsi
  port[$gw]=$ZC_ISCSI_PORT
  log[$gw]=$ZC_LOG
done

# Both links up (each gateway dials the other) before the suite runs.
for gw in gw-a gw-b; do
  timeout 20 bash -c "until grep -q 'peer link up' '${log[$gw]}'; do sleep 0.1; done" \
    || { echo "$gw: peer link not up"; cat "${log[$gw]}"; exit 1; }
done
cu="$work/cu.log"
set +e
timeout 300 iscsi-test-cu --dataloss -t ALL.MultipathIO \
  "iscsi://127.0.0.1:${port[gw-a]}/$iqn/0" "iscsi://127.0.0.1:${port[gw-b]}/$iqn/0" > "$cu" 2>&1
cu_status=$?
set -e
# Let a spurious fencing or takeover show up before judging.
sleep 3
grep -h -A6 -E '^Run Summary' "$cu" || true
summary=$(tests/iscsi/cu_summary.py "$cu" --list)
status=0
expected=tests/iscsi/multipath-expected.txt
while read -r kind name; do
  case $kind in passed|failed|skipped) ;; *) continue ;; esac
  want=$(awk -v n="$name" '$1 == n {print $2}' "$expected")
  echo "MultipathIO: $name $kind (expected: ${want:-unlisted})"
  if [ "$kind" != "$want" ]; then
    echo "UNEXPECTED: $name $kind, $expected says ${want:-nothing}"
    status=1
  fi
done <<< "$summary"
# iscsi-test-cu exits 1 when a test fails; 124 is the timeout.
[ "$cu_status" -le 1 ] || { echo "iscsi-test-cu exit $cu_status"; status=1; }
disturbed="lock lost|fenced: reporting|took the exclusive lock over"
if grep -qE "$disturbed" "${log[gw-a]}" "${log[gw-b]}"; then
  echo "OWNERSHIP DISTURBED by the suite:"
  grep -hE "$disturbed" "${log[gw-a]}" "${log[gw-b]}" | head
  status=1
fi
for i in "${!pids[@]}"; do
  gw=$([ "$i" = 0 ] && echo gw-a || echo gw-b)
  zc_stop_pid "${pids[$i]}" TERM 30 || status=1
  zc_pool_intact "${log[$gw]}" || { echo "$gw: buffer pool not intact"; status=1; }
done
pids=()
echo "MultipathIO across two gateways: exit $status"
exit "$status"
