#!/usr/bin/env bash
# RBD volumes through zctarget next to `rbd bench` on the same cluster, side
# by side in one run (issue #12): `rbd bench` is librbd's own ceiling, so the
# gap is the target's overhead (plus the load generator's, which shares the
# machine). Workloads: 4 KiB and 128 KiB random read and write at QD 32.
#
#   - `rbd bench --io-threads 32 --io-pattern rand` on image bench-rbd;
#   - zctarget (release build, reactors = 1) serving image bench-zc over
#     iSCSI (tests/bench/iscsi-load.c, libiscsi, one session, QD 32) and
#     NVMe/TCP (zc-nvme-perf, one queue, QD 32);
#
# the runs of one workload alternating between the three, both 256 MiB
# images written sequentially once first (reads of never-written objects
# would be answered without touching the disk).
#
#   tests/bench/rbd.sh [--seconds N] [--engine uring|epoll] [--ceph-conf PATH]
#                      [--out FILE]
#
#   --seconds N      length of each zctarget run (default 10, at most 600);
#                    `rbd bench` runs a fixed number of I/Os sized to take
#                    about as long on this machine
#   --engine E       zctarget's io_engine (default uring)
#   --ceph-conf PATH an existing cluster with a pool `rbd` (default: a
#                    throwaway one from tests/ceph/cluster.sh, stopped after)
#   --out FILE       also write the table (and raw results) to FILE
#
# Everything it starts is stopped by PID on exit, failure included; its
# images are removed. Not run by tests/run.sh.
set -euo pipefail

RUN_SECONDS=10
ENGINE=uring
CONF=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) RUN_SECONDS="$2"; shift 2 ;;
    --ceph-conf) CONF=$(realpath "$2"); shift 2 ;;
    --engine) ENGINE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "rbd.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
case "$RUN_SECONDS" in *[!0-9]* | "") echo "rbd.sh: --seconds takes an integer" >&2; exit 1 ;; esac
if [ "$RUN_SECONDS" -lt 1 ] || [ "$RUN_SECONDS" -gt 600 ]; then echo "--seconds must be 1..600" >&2; exit 1; fi

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lib/daemon.sh
. "$ROOT/tests/lib/daemon.sh"
log() { echo "rbd.sh: $*" >&2; }

need=()
pkg-config --exists libiscsi 2>/dev/null || need+=(libiscsi-dev)
command -v gcc >/dev/null || need+=(gcc)
command -v pkg-config >/dev/null || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi

WORK=$(mktemp -d /tmp/zc-rbd-bench.XXXXXX)
CLUSTER=""
ZC=""
cleanup() {
    [ -n "$ZC" ] && { zc_stop_pid "$ZC" TERM 30 || true; }
    if [ -n "$CONF" ] && [ -z "$CLUSTER" ]; then
        for img in bench-rbd bench-zc; do
            CEPH_CONF="$CONF" timeout 60 rbd rm --no-progress "rbd/$img-$$" >/dev/null 2>&1 || true
        done
    fi
    [ -n "$CLUSTER" ] && DIR="$CLUSTER" bash "$ROOT/tests/ceph/cluster.sh" stop >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$CONF" ]; then
    CLUSTER="$WORK/ceph"
    port=$(zc_free_ports 1)
    log "starting a throwaway Ceph cluster (monitor on 127.0.0.1:$port)"
    DIR="$CLUSTER" MON_PORT="$port" bash "$ROOT/tests/ceph/cluster.sh" start >&2
    CONF="$CLUSTER/ceph.conf"
fi
export CEPH_CONF="$CONF"

log "building (release)"
(cd "$ROOT" && cargo build --release -q -p zctarget --bin zctarget \
    && cargo build --release -q -p zctarget-tests --bin zc-nvme-perf) >&2
BUILD=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ZCTARGET="$BUILD/release/zctarget"
NVME_PERF="$BUILD/release/zc-nvme-perf"
# shellcheck disable=SC2046
gcc -O2 -Wall -o "$WORK/iscsi-load" "$ROOT/tests/bench/iscsi-load.c" $(pkg-config --cflags --libs libiscsi)

RBD_IMG="bench-rbd-$$"
ZC_IMG="bench-zc-$$"
for img in "$RBD_IMG" "$ZC_IMG"; do
    rbd create --size 256M "rbd/$img"
    rbd bench --io-type write --io-pattern seq --io-size 4M --io-threads 4 --io-total 256M \
        "rbd/$img" >/dev/null
done

IQN=iqn.2026-12.io.zctarget.bench:rbd
NQN=nqn.2026-12.io.zctarget.bench:rbd
cat >"$WORK/zctarget.toml" <<TOML
[server]
admin_socket = ""
iscsi_listen = ["127.0.0.1:0"]
nvme_listen = ["127.0.0.1:0"]
io_engine = "$ENGINE"
reactors = 1
buffer_pool = "256MiB"

[[volumes]]
name = "bench"
backend = "rbd"
pool = "rbd"
image = "$ZC_IMG"
ceph_conf = "$CONF"
block_size = 4096

[[iscsi_targets]]
iqn = "$IQN"
luns = ["bench"]

[[nvme_subsystems]]
nqn = "$NQN"
namespaces = ["bench"]
TOML
"$ZCTARGET" serve --config "$WORK/zctarget.toml" >"$WORK/zctarget.log" 2>&1 &
ZC=$!
ZC_PID=$ZC ZC_LOG="$WORK/zctarget.log"
zc_wait_listening iscsi nvme-tcp
ZC_PID=""
ISCSI_URL="iscsi://127.0.0.1:$ZC_ISCSI_PORT/$IQN/0"
NVME_ADDR="127.0.0.1:$ZC_NVME_PORT"

WORKLOADS=(r4k w4k r128k w128k)
declare -A BS=([r4k]=4096 [w4k]=4096 [r128k]=131072 [w128k]=131072)
declare -A RW=([r4k]=read [w4k]=write [r128k]=read [w128k]=write)
declare -A LABEL=([r4k]="4 KiB random read" [w4k]="4 KiB random write"
    [r128k]="128 KiB random read" [w128k]="128 KiB random write")
declare -A IOPS MBPS
RAW="$WORK/raw.txt"
: >"$RAW"

# rbd bench runs a number of I/Os, not a time: sized from the zctarget NVMe
# run just before it (times 1.5: librbd alone is usually faster), so both
# take about as long.
rbd_bench() { # workload ios
    local w=$1 n=$2 out line
    out=$(timeout $((RUN_SECONDS * 6 + 60)) rbd bench --io-type "${RW[$w]}" --io-size "${BS[$w]}" \
        --io-threads 32 --io-pattern rand --io-total $((n * BS[$w])) "rbd/$RBD_IMG" 2>&1) || {
        log "rbd bench $w failed: $(echo "$out" | tail -3)"
        return 0
    }
    # "elapsed: S ops: N ops/sec: R bytes/sec: B UNIT" (S in whole seconds:
    # the rate is rbd's own)
    line=$(echo "$out" | grep '^elapsed:' | tail -1)
    IOPS[rbd|$w]=$(echo "$line" | awk '{ printf "%.0f", $6 }')
    MBPS[rbd|$w]=$(awk -v r="${IOPS[rbd|$w]}" -v b="${BS[$w]}" 'BEGIN { printf "%.1f", r * b / 1e6 }')
    echo "rbd bench $w: $line" >>"$RAW"
    log "rbd bench $w: ${IOPS[rbd|$w]} IOPS"
}

START=$(date -u '+%Y-%m-%d %H:%M UTC')
for w in "${WORKLOADS[@]}"; do
    out=$(timeout $((RUN_SECONDS + 60)) "$NVME_PERF" --addr "$NVME_ADDR" --nqn "$NQN" --queues 1 --qd 32 \
        --seconds "$RUN_SECONDS" --json --pattern rand --rw "${RW[$w]}" --bs "${BS[$w]}")
    IOPS[nvme|$w]=$(echo "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["iops"]))')
    MBPS[nvme|$w]=$(echo "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["mbps"], 1))')
    echo "zctarget NVMe/TCP $w: $out" >>"$RAW"
    log "zctarget NVMe/TCP $w: ${IOPS[nvme|$w]} IOPS"
    rbd_bench "$w" $((IOPS[nvme|$w] * RUN_SECONDS * 3 / 2 + 1000))
    wflag=()
    [ "${RW[$w]}" = write ] && wflag=(-w)
    out=$(timeout $((RUN_SECONDS + 60)) "$WORK/iscsi-load" "${wflag[@]}" -b "${BS[$w]}" -q 32 \
        -t "$RUN_SECONDS" "$ISCSI_URL")
    IOPS[iscsi|$w]=$(echo "$out" | sed -n 's/.*iops=\([0-9.]*\).*/\1/p' | awk '{printf "%.0f", $1}')
    MBPS[iscsi|$w]=$(echo "$out" | sed -n 's/.*mbps=\([0-9.]*\).*/\1/p')
    echo "zctarget iSCSI $w: $out" >>"$RAW"
    log "zctarget iSCSI $w: ${IOPS[iscsi|$w]} IOPS"
done

cell() { awk -v v="${1:-}" -v m="${2:-}" 'BEGIN { if (v == "") print "—"; else printf "%.1f k (%.0f MB/s)", v / 1000, m }'; }
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b == 0) print "—"; else printf "%.2f", a / b }'; }
{
    echo "Measured $START on $(hostname): $(nproc) CPUs, Linux $(uname -r), $(rbd --version | cut -d' ' -f1-3)."
    echo "One 256 MiB image each, written once first; QD 32; zctarget release, reactors = 1, io_engine $ENGINE, ${RUN_SECONDS} s per run; IOPS (MB/s), ratio = zctarget ÷ rbd bench."
    echo
    echo "| workload | rbd bench | zctarget NVMe/TCP | ratio | zctarget iSCSI | ratio |"
    echo "|---|---:|---:|---:|---:|---:|"
    for w in "${WORKLOADS[@]}"; do
        echo "| ${LABEL[$w]} | $(cell "${IOPS[rbd|$w]:-}" "${MBPS[rbd|$w]:-}") | $(cell "${IOPS[nvme|$w]:-}" "${MBPS[nvme|$w]:-}") | $(ratio "${IOPS[nvme|$w]:-}" "${IOPS[rbd|$w]:-}") | $(cell "${IOPS[iscsi|$w]:-}" "${MBPS[iscsi|$w]:-}") | $(ratio "${IOPS[iscsi|$w]:-}" "${IOPS[rbd|$w]:-}") |"
    done
} >"$WORK/table.md"
cat "$WORK/table.md"
if [ -n "$OUT" ]; then
    { cat "$WORK/table.md"; echo; echo "Raw runs:"; echo; sed 's/^/    /' "$RAW"; } >"$OUT"
fi
