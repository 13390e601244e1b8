#!/usr/bin/env bash
# How NVMe/TCP throughput scales with reactors and connections (issue #10,
# "multiple reactors scale"): zctarget (release, uring, a 1 GiB tmpfs
# volume) with `reactors = 1` and `reactors = 2`, zc-nvme-perf with 1, 2
# and 4 I/O queues of QD 32, 4 KiB random reads. On a 2-CPU machine the
# target and the client share the CPUs: nothing is pinned, so this shows
# what a second reactor buys when the client competes for the same cores.
# Prints one Markdown table: IOPS and target CPU per I/O.
#
#   tests/bench/scale.sh [--seconds N]
#
# Every process it starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib/daemon.sh
. tests/lib/daemon.sh

SECONDS_RUN=5
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECONDS_RUN="$2"; shift 2 ;;
    *) echo "scale.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
case "$SECONDS_RUN" in '' | *[!0-9]*) echo "--seconds takes an integer" >&2; exit 1 ;; esac
if [ "$SECONDS_RUN" -lt 1 ] || [ "$SECONDS_RUN" -gt 600 ]; then
    echo "--seconds must be 1..600" >&2
    exit 1
fi

cargo build --release -q -p zctarget --bin zctarget -p zctarget-tests --bin zc-nvme-perf >&2
ZC_BIN=build/release/zctarget
PERF=build/release/zc-nvme-perf
work=$(mktemp -d /dev/shm/zc-scale.XXXXXX)
trap 'zc_stop KILL 5 >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
NQN=nqn.2026-12.io.zctarget.bench:scale

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

echo "| reactors | queues | IOPS | target CPU µs/I/O |"
echo "|---:|---:|---:|---:|"
for reactors in 1 2; do
    cat >"$work/z.toml" <<CFG
[server]
admin_socket = ""
iscsi_listen = []
nvme_listen = ["127.0.0.1:0"]
io_engine = "uring"
reactors = $reactors

[[volumes]]
name = "v"
path = "$work/v.img"
size = "1GiB"

[[nvme_subsystems]]
nqn = "$NQN"
namespaces = ["v"]
hosts = ["*"]
CFG
    zc_start "$work/z.toml" "$work/daemon-$reactors.log"
    zc_wait_listening nvme || { cat "$work/daemon-$reactors.log" >&2; exit 1; }
    for queues in 1 2 4; do
        t0=$(ticks "$ZC_PID")
        out=$(timeout $((SECONDS_RUN + 30)) "$PERF" --addr "127.0.0.1:$ZC_NVME_PORT" --nqn "$NQN" \
            --queues "$queues" --qd 32 --threads "$((queues > 1 ? 2 : 1))" \
            --seconds "$SECONDS_RUN" --json)
        t1=$(ticks "$ZC_PID")
        iops=$(python3 -c 'import json,sys; print(round(json.load(sys.stdin)["iops"]))' <<<"$out")
        ios=$((iops * SECONDS_RUN))
        cpu=$(python3 -c "print(f'{($t1 - $t0) * 1e6 / $hz / max($ios, 1):.1f}')")
        echo "| $reactors | $queues | $iops | $cpu |"
    done
    zc_stop TERM 20 >/dev/null
done
