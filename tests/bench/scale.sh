#!/usr/bin/env bash
# How 4 KiB random-read throughput scales with reactors and connections
# (issue #10, "multiple reactors scale"): zctarget (release, a 1 GiB tmpfs
# volume, pages allocated) under zc-nvme-perf (NVMe/TCP, QD 32 per queue,
# one client thread, 1, 2 and 4 queues = TCP connections) in three setups:
#
#   1r-pinned  reactors = 1, target on CPU 0, client on CPU 1 (compare.sh's setup)
#   1r-shared  reactors = 1, target and client free to use every CPU
#   2r-shared  reactors = 2 (pinned to CPUs 0 and 1), client free to use every CPU
#
# On a 2-CPU machine the shared setups put the client on the target's
# cores: they show what a second reactor buys when nothing else is free.
# Per cell: IOPS, target CPU µs per I/O (utime + stime of the whole target
# process from /proc/<pid>/stat ÷ I/Os), the target's CPU use in % of one
# core, the share of that CPU each reactor thread took (how the
# connections were spread), and the client's CPU µs per I/O. Before the
# runs each target idles 5 s: its CPU then must be ~0 (no busy polling).
# The load average is printed before and after: other work on the machine
# moves these numbers.
#
#   tests/bench/scale.sh [--seconds N] [--engine uring|epoll] [--runs N]
#
# Every process it starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib/daemon.sh
. tests/lib/daemon.sh

SECONDS_RUN=5
ENGINE=uring
RUNS=1
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECONDS_RUN="$2"; shift 2 ;;
    --engine) ENGINE="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    *) echo "scale.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
for v in "$SECONDS_RUN" "$RUNS"; do
    case "$v" in '' | *[!0-9]*) echo "--seconds and --runs take integers" >&2; exit 1 ;; esac
done
if [ "$SECONDS_RUN" -lt 1 ] || [ "$SECONDS_RUN" -gt 600 ] || [ "$RUNS" -lt 1 ] || [ "$RUNS" -gt 10 ]; then
    echo "--seconds must be 1..600, --runs 1..10" >&2
    exit 1
fi
case "$ENGINE" in uring | epoll) ;; *) echo "--engine is uring or epoll" >&2; exit 1 ;; esac
NCPU=$(nproc)
if [ "$NCPU" -lt 2 ]; then
    echo "scale.sh needs at least 2 CPUs" >&2
    exit 1
fi

cargo build --release -q -p zctarget --bin zctarget -p zctarget-tests --bin zc-nvme-perf >&2
ZC_BIN=$(readlink -f build/release/zctarget)
PERF=$(readlink -f build/release/zc-nvme-perf)
work=$(mktemp -d /dev/shm/zc-scale.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do zc_stop_pid "$p" TERM 20 >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
NQN=nqn.2026-12.io.zctarget.bench:scale
hz=$(getconf CLK_TCK)

ticks() { # utime + stime of a process or thread (stat file), in clock ticks
    local s
    s=$(cat "$1")
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo $((${12} + ${13}))
}
# reactor_ticks PID: "t0 t1 ..." for the threads named reactor-N, in order.
reactor_ticks() {
    local t ts=()
    for t in /proc/"$1"/task/*; do
        case "$(cat "$t/comm" 2>/dev/null)" in
        reactor-*) ts+=("$(cat "$t/comm"):$(ticks "$t/stat")") ;;
        esac
    done
    printf '%s\n' "${ts[@]}" | sort | cut -d: -f2 | tr '\n' ' '
}

start_target() { # KEY REACTORS TASKSET...
    local key=$1 reactors=$2
    shift 2
    dd if=/dev/zero of="$work/$key.img" bs=1M count=1024 status=none
    cat >"$work/$key.toml" <<CFG
[server]
admin_socket = ""
iscsi_listen = []
nvme_listen = ["127.0.0.1:0"]
io_engine = "$ENGINE"
reactors = $reactors

[[volumes]]
name = "v"
path = "$work/$key.img"
size = "1GiB"

[[nvme_subsystems]]
nqn = "$NQN"
namespaces = ["v"]
hosts = ["*"]
CFG
    RUST_LOG=info "$@" "$ZC_BIN" serve --config "$work/$key.toml" >/dev/null 2>"$work/$key.log" &
    ZC_PID=$!
    ZC_LOG="$work/$key.log"
    PIDS+=("$ZC_PID")
    zc_wait_listening nvme-tcp || exit 1
    PID_OF[$key]=$ZC_PID
    ADDR_OF[$key]=127.0.0.1:$ZC_NVME_PORT
    ZC_PID=""
}

declare -A PID_OF ADDR_OF CLIENT_PIN
KEYS=(1r-pinned 1r-shared 2r-shared)
start_target 1r-pinned 1 taskset -c 0
CLIENT_PIN[1r-pinned]="taskset -c 1"
start_target 1r-shared 1
CLIENT_PIN[1r-shared]=""
start_target 2r-shared 2
CLIENT_PIN[2r-shared]=""

echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname): $NCPU CPUs, $(uname -r), engine $ENGINE, $SECONDS_RUN s per run."
echo "Load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
sleep 1
for key in "${KEYS[@]}"; do
    t0=$(ticks "/proc/${PID_OF[$key]}/stat")
    sleep 5
    t1=$(ticks "/proc/${PID_OF[$key]}/stat")
    echo "Idle CPU over 5 s, $key: $(((t1 - t0) * 1000 / hz)) ms"
done
echo
echo "| setup | queues | run | IOPS | target CPU µs/I/O | target CPU % of a core | per-reactor CPU share | client CPU µs/I/O |"
echo "|---|---:|---:|---:|---:|---:|---|---:|"
for queues in 1 2 4; do
    for r in $(seq "$RUNS"); do
        for key in "${KEYS[@]}"; do
            pid=${PID_OF[$key]}
            t0=$(ticks "/proc/$pid/stat")
            read -r -a rt0 <<<"$(reactor_ticks "$pid")"
            start=$(date +%s%N)
            # shellcheck disable=SC2086
            out=$(timeout $((SECONDS_RUN + 30)) /usr/bin/env ${CLIENT_PIN[$key]} \
                /usr/bin/time -f '%U %S' -o "$work/client.time" \
                "$PERF" --addr "${ADDR_OF[$key]}" --nqn "$NQN" --queues "$queues" --qd 32 \
                --threads 1 --seconds "$SECONDS_RUN" --json)
            end=$(date +%s%N)
            t1=$(ticks "/proc/$pid/stat")
            read -r -a rt1 <<<"$(reactor_ticks "$pid")"
            shares=""
            total=$((t1 - t0))
            for i in "${!rt1[@]}"; do
                d=$((rt1[i] - ${rt0[i]:-0}))
                shares+="$(awk -v d="$d" -v t="$total" 'BEGIN { printf "%.0f%%", (t > 0 ? 100 * d / t : 0) }') "
            done
            python3 - "$out" "$t0" "$t1" "$hz" "$start" "$end" "$(cat "$work/client.time")" \
                "$key" "$queues" "$r" "${shares% }" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
t0, t1, hz, start, end = (int(x) for x in sys.argv[2:7])
cu, cs = (float(x) for x in sys.argv[7].split())
key, queues, run, shares = sys.argv[8:12]
ios = max(d["ios"], 1)
cpu_s = (t1 - t0) / hz
wall = (end - start) / 1e9
print(f"| {key} | {queues} | {run} | {d['iops'] / 1000:.1f} k | {cpu_s * 1e6 / ios:.1f} | "
      f"{100 * cpu_s / wall:.0f} % | {shares} | {(cu + cs) * 1e6 / ios:.1f} |")
PY
        done
    done
done
echo
echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
