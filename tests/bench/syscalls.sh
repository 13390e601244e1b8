#!/usr/bin/env bash
# System calls per I/O on the target, by call, with `perf stat` on the
# syscall tracepoints of the target process (no strace: its overhead
# changes the batching it is meant to measure):
#
#   tests/bench/syscalls.sh [--bin PATH] [--nvme-perf PATH] [--engine uring|epoll] [--seconds N]
#
# One release daemon (reactors = 1, pinned to CPU 0, a 1 GiB tmpfs volume,
# the settings of compare.sh), clients on CPU 1: NVMe/TCP 4 KiB random read,
# iSCSI 4 KiB random read and write, iSCSI and NVMe/TCP 128 KiB sequential
# read, all QD 32. Prints, per workload, the target's CPU per I/O and the
# calls per I/O (most frequent first). Needs perf (linux-perf) and what
# compare.sh needs for iscsi-load (libiscsi-dev, gcc). Stops what it
# started by PID; the volume lives under /dev/shm and is removed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lib/daemon.sh
. "$ROOT/tests/lib/daemon.sh"
BIN="$ROOT/build/release/zctarget"
NVME_PERF="$ROOT/build/release/zc-nvme-perf"
ENGINE=uring
SECS=4
while [ $# -gt 0 ]; do
    case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --nvme-perf) NVME_PERF=$2; shift 2 ;;
    --engine) ENGINE=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "syscalls.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
case "$SECS" in '' | *[!0-9]*) echo "--seconds takes an integer" >&2; exit 1 ;; esac
[ "$SECS" -ge 1 ] && [ "$SECS" -le 60 ] || { echo "--seconds must be 1..60" >&2; exit 1; }
command -v perf >/dev/null || { echo "syscalls.sh: needs perf" >&2; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q -p zctarget --bin zctarget)
[ -x "$NVME_PERF" ] || (cd "$ROOT" && cargo build --release -q -p zctarget-tests --bin zc-nvme-perf)
WORK=$(mktemp -d /dev/shm/zc-syscalls.XXXXXX)
PID=""
cleanup() {
    [ -n "$PID" ] && zc_stop_pid "$PID" TERM 5 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
gcc -O2 -Wall -o "$WORK/iscsi-load" "$ROOT/tests/bench/iscsi-load.c" $(pkg-config --cflags --libs libiscsi)
dd if=/dev/zero of="$WORK/v.img" bs=1M count=1024 status=none
IQN=iqn.2026-12.io.zctarget.bench:zc
NQN=nqn.2026-12.io.zctarget.bench:zc
cat >"$WORK/c.toml" <<TOML
[server]
admin_socket = ""
iscsi_listen = ["127.0.0.1:0"]
nvme_listen = ["127.0.0.1:0"]
io_engine = "$ENGINE"
reactors = 1
buffer_pool = "256MiB"

[[volumes]]
name = "bench"
path = "$WORK/v.img"
size = "1GiB"

[[iscsi_targets]]
iqn = "$IQN"
luns = ["bench"]

[[nvme_subsystems]]
nqn = "$NQN"
namespaces = ["bench"]
TOML
taskset -c 0 "$BIN" serve --config "$WORK/c.toml" >"$WORK/log" 2>&1 &
PID=$!
ZC_PID=$PID ZC_LOG="$WORK/log"
zc_wait_listening iscsi nvme-tcp
IURL="iscsi://127.0.0.1:$ZC_ISCSI_PORT/$IQN/0"
NADDR="127.0.0.1:$ZC_NVME_PORT"
HZ=$(getconf CLK_TCK)
ticks() { local s; s=$(cat "/proc/$1/stat"); s=${s##*) }; set -- $s; echo $(( ${12} + ${13} )); }
run() { # name client...
    local name=$1 pp t0 t1 out ios
    shift
    perf stat -e 'raw_syscalls:sys_enter,syscalls:sys_enter_*' -p "$PID" -o "$WORK/$name.perf" &
    pp=$!
    sleep 0.5
    t0=$(ticks "$PID")
    out=$(timeout $((SECS + 30)) taskset -c 1 "$@")
    t1=$(ticks "$PID")
    kill -INT "$pp"
    wait "$pp" || true
    ios=$(echo "$out" | sed -n 's/.*"ios": *\([0-9]*\).*/\1/p; s/.* ios=\([0-9]*\).*/\1/p' | head -1)
    python3 - "$WORK/$name.perf" "$ios" "$name" "$((t1 - t0))" "$HZ" <<'PY'
import re, sys
path, ios, name, ticks, hz = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rows = []
for line in open(path):
    m = re.match(r'\s*([\d,]+)\s+(\S+)', line)
    if m and ':' in m.group(2):
        n = int(m.group(1).replace(',', ''))
        if n:
            rows.append((n, m.group(2).replace('syscalls:sys_enter_', '').replace('raw_syscalls:sys_enter', 'ALL')))
rows.sort(reverse=True)
print(f"{name}: {ios} I/Os, target CPU {ticks * 1e6 / hz / max(ios, 1):.1f} us/IO; calls per I/O:")
print("  " + ", ".join(f"{ev} {n / max(ios, 1):.3f}" for n, ev in rows[:9]))
PY
}
run nvme-4k-randread "$NVME_PERF" --addr "$NADDR" --nqn "$NQN" --queues 1 --qd 32 --seconds "$SECS" --json --pattern rand --rw read --bs 4096
run iscsi-4k-randread "$WORK/iscsi-load" -t "$SECS" -b 4096 -q 32 "$IURL"
run iscsi-4k-randwrite "$WORK/iscsi-load" -t "$SECS" -w -b 4096 -q 32 "$IURL"
run iscsi-128k-seqread "$WORK/iscsi-load" -t "$SECS" -s -b 131072 -q 32 "$IURL"
run nvme-128k-seqread "$NVME_PERF" --addr "$NADDR" --nqn "$NQN" --queues 1 --qd 32 --seconds "$SECS" --json --pattern seq --rw read --bs 131072
