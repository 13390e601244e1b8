#!/usr/bin/env bash
# Zero-copy sends on a route that is not loopback (issue #10): zctarget in
# one private network namespace, the hosts in another, joined by a veth
# pair. On loopback `zerocopy = "auto"` sends by copy (the kernel would copy
# anyway); on any other route auto mode turns SO_ZEROCOPY on for payloads
# of at least `zerocopy_threshold`, and every such send's buffer waits for
# the kernel's completion notification. This is the path a real NIC takes.
#
#   tests/net/zerocopy-veth.sh [--bin PATH] [--engine uring|epoll] [--seconds N]
#
# A memory volume: its reads go through leased buffers (a file on tmpfs
# would be sent with sendfile, which is not the path under test).
# Runs 128 KiB reads over NVMe/TCP (zc-nvme-perf, verifying every read
# against the pattern it wrote first) and over iSCSI (tests/bench/iscsi-load.c), then
# checks the daemon's metrics:
#   - zero-copy sends happened and their notifications arrived (none
#     abandoned, nothing quarantined);
#   - the sender did not spin on a full socket: `sendmsg` calls that would
#     block stay under one per command (a lone EPOLLERR from a notification
#     once made the writer retry sendmsg in a loop, see
#     `target/src/zerocopy/sender.rs`);
#   - the daemon stops on SIGTERM without the grace period, with its buffer
#     pool intact (every lease back).
# Needs root (ip netns). Prints "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=tests/lib/daemon.sh disable=SC1091
. tests/lib/daemon.sh

bin="" engine=uring seconds=3
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --engine) engine=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    *) sed -n '2,22p' "$0" >&2; exit 2 ;;
  esac
done
ZC_BIN=$(zc_bin "$bin") || exit 1
PERF="$(dirname "$ZC_BIN")/zc-nvme-perf"
if [ ! -x "$PERF" ]; then
  cargo build -q -p zctarget-tests --bin zc-nvme-perf || exit 1
  PERF="$(dirname "$ZC_BIN")/zc-nvme-perf"
fi
[ -x "$PERF" ] || { echo "zc-nvme-perf not found next to $ZC_BIN" >&2; exit 1; }

NS_T="zc-veth-t-$$" NS_H="zc-veth-h-$$"
T_ADDR=10.231.$(( $$ % 250 )).1 H_ADDR=10.231.$(( $$ % 250 )).2
work=$(mktemp -d)
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  if [ -n "$ZC_PID" ]; then zc_stop_pid "$ZC_PID" KILL 5 || true; fi
  ip netns del "$NS_T" 2>/dev/null
  ip netns del "$NS_H" 2>/dev/null
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
# The iSCSI load: libiscsi's asynchronous API (tests/bench/iscsi-load.c).
# shellcheck disable=SC2046  # pkg-config's flags are separate words
gcc -O2 -Wall -o "$work/iscsi-load" tests/bench/iscsi-load.c \
  $(pkg-config --cflags --libs libiscsi) || { echo "cannot build iscsi-load (libiscsi-dev, gcc)" >&2; exit 1; }

if ! ip netns add "$NS_T" 2>/dev/null || ! ip netns add "$NS_H" 2>/dev/null; then
  echo "SKIPPED: cannot create network namespaces (needs root)"
  exit 0
fi
ip -n "$NS_T" link add vt type veth peer name vh netns "$NS_H" || exit 1
ip -n "$NS_T" addr add "$T_ADDR/30" dev vt
ip -n "$NS_H" addr add "$H_ADDR/30" dev vh
for ns in "$NS_T" "$NS_H"; do
  ip -n "$ns" link set lo up
done
ip -n "$NS_T" link set vt up
ip -n "$NS_H" link set vh up

nqn=nqn.2026-12.io.zctarget:veth
iqn=iqn.2026-12.io.zctarget:veth
metrics() {
  ip netns exec "$NS_T" bash -c \
    'exec 3<>/dev/tcp/127.0.0.1/9464 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3'
}
# metric NAME: the sum of every series of NAME
metric() {
  awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d\n", s }' <<< "$M"
}
# check NAME: PASS or FAIL by the status of the command just before
check() {
  if [ $? = 0 ]; then
    echo "PASS: $1"; ZC_PASSED=$((ZC_PASSED + 1))
  else
    echo "FAIL: $1"; ZC_FAILED=$((ZC_FAILED + 1))
  fi
}

# run_mode MODE: one daemon with `zerocopy = MODE`, both loads, the checks
run_mode() {
  local mode=$1
  cat > "$work/zc-$mode.toml" <<CFG
[server]
admin_socket = ""
iscsi_listen = ["$T_ADDR:3260"]
nvme_listen = ["$T_ADDR:4420"]
metrics_listen = "127.0.0.1:9464"
io_engine = "$engine"
reactors = 1
buffer_pool = "64MiB"
zerocopy = "$mode"
poison_on_release = true

[[volumes]]
name = "v"
backend = "memory"
size = "256MiB"

[[iscsi_targets]]
iqn = "$iqn"
luns = ["v"]

[[nvme_subsystems]]
nqn = "$nqn"
namespaces = ["v"]
CFG

  ZC_LOG="$work/zc-$mode.log"
  RUST_LOG=info ip netns exec "$NS_T" "$ZC_BIN" serve --config "$work/zc-$mode.toml" > /dev/null 2> "$ZC_LOG" &
  ZC_PID=$!
  up=0
  for _ in $(seq 1 100); do
    kill -0 "$ZC_PID" 2>/dev/null || break
    if [ -n "$(zc_log_port "$ZC_LOG" nvme-tcp)" ] && [ -n "$(zc_log_port "$ZC_LOG" iscsi)" ]; then
      up=1; break
    fi
    sleep 0.1
  done
  [ "$up" = 1 ] || { echo "zctarget did not start:"; tail -n 20 "$ZC_LOG"; exit 1; }

  echo "== zerocopy = $mode: NVMe/TCP 128 KiB reads over veth ($engine), verified, ${seconds}s"
  ip netns exec "$NS_H" timeout $((seconds + 60)) "$PERF" --addr "$T_ADDR:4420" --nqn "$nqn" \
    --queues 2 --qd 32 --bs 131072 --pattern seq --rw read --blocks 65536 --verify \
    --seconds "$seconds" --json > "$work/nvme.json" 2> "$work/nvme.err"
  nvme_status=$?
  [ "$nvme_status" = 0 ] || tail -n 5 "$work/nvme.err"
  read -r nvme_ios nvme_errors nvme_bad < <(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["ios"], r["errors"], r["verify_failures"])' "$work/nvme.json" 2>/dev/null || echo "0 -1 -1")
  [ "$nvme_status" = 0 ] && [ "$nvme_ios" -gt 0 ] && [ "$nvme_errors" = 0 ] && [ "$nvme_bad" = 0 ]
  check "$mode: NVMe/TCP reads complete and verify (exit $nvme_status, $nvme_ios I/Os, $nvme_errors errors, $nvme_bad bad reads)"

  echo "== zerocopy = $mode: iSCSI 128 KiB reads over veth ($engine), ${seconds}s"
  ip netns exec "$NS_H" timeout $((seconds + 60)) "$work/iscsi-load" -i iqn.2026-12.io.zctarget:veth-host \
    -q 32 -b 131072 -s -t "$seconds" "iscsi://$T_ADDR:3260/$iqn/0" > "$work/iscsi.out" 2>&1
  iscsi_status=$?
  iscsi_result=$(tail -n 1 "$work/iscsi.out")
  # exit 0: every command GOOD ("errors=0")
  [ "$iscsi_status" = 0 ]
  check "$mode: iSCSI reads complete ($iscsi_result, exit $iscsi_status)"

  M=$(metrics)
  zc_sends=$(metric zctarget_zerocopy_sends_total)
  notes=$(metric zctarget_zerocopy_notifications_total)
  copied=$(metric zctarget_zerocopy_copied_notifications_total)
  abandoned=$(metric zctarget_zerocopy_abandoned_total)
  quarantined=$(metric zctarget_zerocopy_quarantined_bytes)
  would_block=$(metric zctarget_sendmsg_would_block_total)
  reads=$(metric zctarget_volume_reads_total)
  read_bytes=$(metric zctarget_volume_read_bytes_total)
  zc_bytes=$(metric zctarget_zerocopy_sent_bytes_total)
  echo "zero-copy sends $zc_sends, notifications $notes ($copied copied), abandoned $abandoned," \
    "quarantined $quarantined B, sendmsg would-block $would_block, volume reads $reads (NVMe I/Os $nvme_ios)"
  [ "$zc_sends" -gt 0 ]
  check "$mode: zero-copy sends on a non-loopback route"
  [ "$notes" -gt 0 ]
  check "$mode: their notifications arrive"
  [ "$quarantined" = 0 ]
  check "$mode: nothing quarantined"
  if [ "$mode" = auto ]; then
    # veth hands the pages to another namespace, so the kernel copies and
    # says so: auto mode must notice and send by copy on those connections
    [ "$copied" = "$notes" ] && [ "$abandoned" -ge 1 ] && [ $((zc_bytes * 10)) -lt "$read_bytes" ]
    check "auto: gives zero-copy up where every notification says copied ($abandoned connections, $zc_bytes of $read_bytes bytes zero-copy)"
  else
    [ "$abandoned" = 0 ] && [ $((zc_bytes * 10)) -ge $((read_bytes * 9)) ]
    check "always: the data goes zero-copy ($zc_bytes of $read_bytes bytes)"
  fi
  [ "$reads" -gt 0 ] && [ $((would_block * 10)) -lt "$reads" ]
  check "$mode: no sendmsg spin on a full socket ($would_block would-block for $reads reads)"

  start=$(date +%s)
  zc_stop_pid "$ZC_PID" TERM 15
  stopped=$(( $(date +%s) - start ))
  ZC_PID=""
  [ "$ZC_STATUS" = 0 ] && [ "$stopped" -lt 10 ]
  check "$mode: SIGTERM stops it without the grace period (${stopped}s, status $ZC_STATUS)"
  zc_pool_intact "$ZC_LOG"
  check "$mode: buffer pool intact at exit"
}

for mode in auto always; do
  run_mode "$mode"
done
zc_summary
