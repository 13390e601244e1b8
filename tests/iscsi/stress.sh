#!/usr/bin/env bash
# Issue #3, acceptance 3: four concurrent libiscsi clients with distinct
# initiator names doing overlapping read/write/verify on one LUN, plus
# COMPARE AND WRITE contention. Passes only with zero corruption, a CAW
# counter equal to the sum of successful increments, every session ending
# with the buffer pool full again, and a clean SIGTERM exit.
#
#   tests/iscsi/stress.sh [--engine uring|epoll] [--policy strict|eager]
#                         [--bin PATH] [--seconds N] [--ceph-conf PATH]
#
# With --ceph-conf the LUN is a fresh 64 MiB RBD image on that cluster
# (tests/ceph/cluster.sh) instead of a file; the image is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib/daemon.sh
. tests/lib/daemon.sh

engine=uring
policy=strict
bin=
seconds=20
clients=4
ceph_conf=
while [ $# -gt 0 ]; do
  case $1 in
    --engine) engine=$2; shift 2 ;;
    --policy) policy=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --ceph-conf) ceph_conf=$(realpath "$2"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
ZC_BIN=$(zc_bin "$bin")

if ! pkg-config --exists libiscsi 2>/dev/null || ! command -v gcc >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q libiscsi-dev gcc pkg-config >/dev/null
fi

work=$(mktemp -d)
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  zc_stop TERM 30 || true
  if [ -n "$ceph_conf" ]; then
    CEPH_CONF="$ceph_conf" timeout 60 rbd rm --no-progress "rbd/$image" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck disable=SC2046  # pkg-config prints several words
gcc -O2 -Wall -Wextra -Werror -o "$work/stress" tests/iscsi/stress.c $(pkg-config --cflags --libs libiscsi)

image="zc-stress-$engine-$$"
volume='path = "shared.img"'
backing="file"
if [ -n "$ceph_conf" ]; then
  volume="backend = \"rbd\"
pool = \"rbd\"
image = \"$image\"
ceph_conf = \"$ceph_conf\""
  backing="rbd image rbd/$image"
fi
iqn=iqn.2026-11.io.zctarget:stress
prefix=iqn.2026-11.io.zctarget.test:stress-client
cat > "$work/zctarget.toml" <<CFG
[server]
admin_socket = ""
iscsi_listen = ["127.0.0.1:0"]
nvme_listen = []
io_engine = "$engine"
status_policy = "$policy"
reactors = 2
poison_on_release = true
buffer_pool = "16MiB"

[[volumes]]
name = "shared"
$volume
size = "64MiB"

[[iscsi_targets]]
iqn = "$iqn"
luns = ["shared"]
initiators = ["$prefix-0", "$prefix-1", "$prefix-2", "$prefix-3", "$prefix-control"]
CFG
zc_start "$work/zctarget.toml" "$work/daemon.log"
zc_wait_listening iscsi
port=$ZC_ISCSI_PORT

url="iscsi://127.0.0.1:$port/$iqn/0"
fail() {
  echo "iscsi stress, $engine engine: FAILED: $*" >&2
  tail -20 "$work/daemon.log" >&2
  exit 1
}

"$work/stress" "$url" "$prefix-control" init-counter || fail "could not initialise the counter block"

# A stranger is refused (the ACL lists the five names above).
if "$work/stress" "$url" "iqn.2026-11.io.zctarget.test:stranger" read-counter 2>/dev/null; then
  fail "an initiator outside the ACL logged in"
fi

pids=()
for i in $(seq 0 $((clients - 1))); do
  timeout $((seconds + 60)) "$work/stress" "$url" "$prefix-$i" "$i" 100000 "$seconds" \
    > "$work/client-$i.out" 2> "$work/client-$i.err" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do
  wait "$p" || status=1
done
for i in $(seq 0 $((clients - 1))); do
  cat "$work/client-$i.out"
  [ -s "$work/client-$i.err" ] && head -5 "$work/client-$i.err" >&2
done
[ "$status" = 0 ] || fail "a client saw corruption or an error"

sum=$(awk '{for (i = 1; i <= NF; i++) if ($i == "caw") s += $(i + 1)} END {print s + 0}' "$work"/client-*.out)
writes=$(awk '{for (i = 1; i <= NF; i++) if ($i == "writes") s += $(i + 1)} END {print s + 0}' "$work"/client-*.out)
reads=$(awk '{for (i = 1; i <= NF; i++) if ($i == "blocks_verified") s += $(i + 1)} END {print s + 0}' "$work"/client-*.out)
torn=$(awk '{for (i = 1; i <= NF; i++) if ($i == "torn_reads") s += $(i + 1)} END {print s + 0}' "$work"/client-*.out)
counter=$("$work/stress" "$url" "$prefix-control" read-counter) || fail "could not read the counter block"
[ "$counter" = "$sum" ] || fail "COMPARE AND WRITE counter is $counter, clients counted $sum increments"
[ "$sum" -gt 0 ] || fail "no COMPARE AND WRITE succeeded"

# Every client logged out: the last session to end must see the pool full.
sleep 0.5
ended=$(grep -c "session ended" "$work/daemon.log" || true)
[ "$ended" -ge $((clients + 2)) ] || fail "only $ended sessions ended"
pool_ok=1
pool=$(zc_pool_full_after_logout "$work/daemon.log") || pool_ok=0
read -r free total <<< "$pool"
[ "$pool_ok" = 1 ] || fail "pool not full after logout: $free of $total chunks free"

zc_stop TERM 30 || fail "daemon exited $ZC_STATUS on SIGTERM"
zc_pool_intact "$work/daemon.log" || fail "leases outstanding at shutdown"

echo "iscsi stress, $engine engine, $policy status, $backing: $clients clients, $writes writes, $reads blocks verified, $sum compare-and-writes, 0 corrupt ($torn reads torn by a racing overlapping write, whole on re-read), pool $free/$total chunks free after logout"
