#!/usr/bin/env bash
# Back-to-back comparison on this machine, same clients, same pinning
# (target on CPU 0, client on CPU 1), everything on 127.0.0.1:
#
#   - Debian's tgt (tgtd, `bs-type rdwr` LUN on a tmpfs file),
#   - zctarget (release build, reactors = 1) with io_engine "uring" and "epoll",
#     the volume on the same kind of tmpfs file (1 GiB each),
#
# all three running at once, the runs of each workload alternating between
# them (a burst of load from elsewhere then hits all three alike). iSCSI
# through tests/bench/iscsi-load.c (libiscsi, asynchronous, QD 32):
# 4 KiB random read and write, 128 KiB sequential read and write, each
# with libiscsi sending PDU by PDU and again with the client coalescing the
# PDUs it queues in one turn (`-c`, see iscsi-load.c); NVMe/TCP
# (zctarget only) through zc-nvme-perf with the same shapes on one queue of
# QD 32. NVMe/TCP also as in the issue's SPDK reference: 4 KiB random reads
# and writes on a RAM namespace (a 1 GiB `memory` volume, the second
# namespace; SPDK's was a malloc bdev) with the client busy-polling its
# socket as SPDK's `perf` does (`zc-nvme-perf --poll`), so the target's
# sends pay no cross-CPU wake-up of a sleeping client; the client's CPU is
# then 100 % by construction. Also the target's CPU per I/O (utime+stime of the target process
# from /proc/<pid>/stat around each run, divided by the I/Os) and the idle
# target's CPU over 5 s. Prints one Markdown table with ratios to tgt.
#
#   tests/bench/compare.sh [--seconds N] [--runs N] [--quick] [--out FILE]
#
#   --seconds N  length of each run (default 10, at most 600)
#   --runs N     runs per cell; the median is reported (default 1, at most 9)
#   --quick      3 s runs, 2 s idle measurement: a smoke test of the script
#   --out FILE   also write the table (and raw results) to FILE
#
# Every process it starts is stopped by PID on exit, failure included; the
# volumes live in a private directory under /dev/shm that is removed.
set -euo pipefail

RUN_SECONDS=10
RUNS=1
IDLE_SECONDS=5
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) RUN_SECONDS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --quick) RUN_SECONDS=3; RUNS=1; IDLE_SECONDS=2; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
case "$RUN_SECONDS$RUNS" in *[!0-9]*) echo "compare.sh: --seconds and --runs take integers" >&2; exit 1 ;; esac
if [ "$RUN_SECONDS" -lt 1 ] || [ "$RUN_SECONDS" -gt 600 ]; then echo "--seconds must be 1..600" >&2; exit 1; fi
if [ "$RUNS" -lt 1 ] || [ "$RUNS" -gt 9 ]; then echo "--runs must be 1..9" >&2; exit 1; fi
[ "$(nproc)" -ge 2 ] || { echo "compare.sh: needs 2 CPUs (target on 0, client on 1)" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lib/daemon.sh
. "$ROOT/tests/lib/daemon.sh"
log() { echo "compare.sh: $*" >&2; }

# --- what it needs -----------------------------------------------------------
need=()
command -v tgtd >/dev/null || need+=(tgt)
command -v iscsi-inq >/dev/null || need+=(libiscsi-bin)
pkg-config --exists libiscsi 2>/dev/null || need+=(libiscsi-dev)
command -v gcc >/dev/null || need+=(gcc)
command -v pkg-config >/dev/null || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y "${need[@]}" >&2
fi

# --- cleanup: only what this script started, by PID --------------------------
WORK=$(mktemp -d /dev/shm/zc-bench.XXXXXX)
PIDS=()
TGT_CP=""
stop_pid() {
    # SIGKILL after 3 s: tgtd ignores SIGTERM while it has targets.
    zc_stop_pid "$1" TERM 3 || true
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
    if [ -n "$TGT_CP" ]; then
        rm -f "/var/run/tgtd/socket.$TGT_CP" "/var/run/tgtd/socket.$TGT_CP.lock"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -------------------------------------------------------------------
log "building (release)"
(cd "$ROOT" && cargo build --release -q -p zctarget --bin zctarget \
    && cargo build --release -q -p zctarget-tests --bin zc-nvme-perf) >&2
BUILD=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ZCTARGET="$BUILD/release/zctarget"
NVME_PERF="$BUILD/release/zc-nvme-perf"
# shellcheck disable=SC2046
gcc -O2 -Wall -o "$WORK/iscsi-load" "$ROOT/tests/bench/iscsi-load.c" $(pkg-config --cflags --libs libiscsi)
ISCSI_LOAD="$WORK/iscsi-load"

# --- helpers -----------------------------------------------------------------
HZ=$(getconf CLK_TCK)
wait_listen() { # port pid
    zc_wait_port "$1" 20 "$2" && return 0
    log "nothing listens on $1 after 20 s, or the target (pid $2) exited during start-up"
    return 1
}
ticks() { # utime+stime of the whole process (all threads), in clock ticks
    local s
    s=$(cat "/proc/$1/stat")
    s=${s##*) } # past "pid (comm) "
    # shellcheck disable=SC2086
    set -- $s
    echo $(( ${12} + ${13} ))
}
# The client's own CPU (user + system seconds) goes to the raw results, to
# show whether the client or the target was the limit.
TIMER=()
[ -x /usr/bin/time ] && TIMER=(/usr/bin/time -o "$WORK/client.time" -f "%U %S")
median() { sort -g | awk 'NF {v[++n]=$1} END {if (n == 0) print "nan"; else print v[int((n + 1) / 2)]}'; }

declare -A IOPS MBPS CPU IDLE IOPS_L MBPS_L CPU_L
RAW="$WORK/raw.txt"
: >"$RAW"

# run_once KEY RUN PID CMD... : runs CMD on CPU 1 once; appends its IOPS, MB/s
# and the target's CPU µs per I/O to KEY's lists.
run_once() {
    local key=$1 r=$2 pid=$3 out t0 t1 iops mbps ios cpu client
    shift 3
    t0=$(ticks "$pid")
    : >"$WORK/client.time"
    if ! out=$(timeout $((RUN_SECONDS + 60)) taskset -c 1 "${TIMER[@]}" "$@" 2>"$WORK/client.err"); then
        log "$key run $r failed: $(tail -5 "$WORK/client.err") $out"
        echo "$key run $r FAILED" >>"$RAW"
        return 0
    fi
    t1=$(ticks "$pid")
    case "$1" in
    "$NVME_PERF")
        iops=$(echo "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["iops"]))')
        mbps=$(echo "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["mbps"], 1))')
        ios=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ios"])')
        ;;
    *)
        iops=$(echo "$out" | sed -n 's/.*iops=\([0-9.]*\).*/\1/p')
        mbps=$(echo "$out" | sed -n 's/.*mbps=\([0-9.]*\).*/\1/p')
        ios=$(echo "$out" | sed -n 's/.* ios=\([0-9]*\).*/\1/p')
        ;;
    esac
    cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$ios" 'BEGIN { printf "%.1f", (n > 0 ? d * 1e6 / hz / n : 0) }')
    client=$(awk -v n="$ios" '{ if (n > 0) printf "%.1f", ($1 + $2) * 1e6 / n }' "$WORK/client.time")
    echo "$key run $r: iops $iops MB/s $mbps ios $ios target-cpu-us/io $cpu client-cpu-us/io ${client:-?}" >>"$RAW"
    log "$key run $r: $iops IOPS, $mbps MB/s, target CPU $cpu us/IO"
    IOPS_L[$key]+="$iops"$'\n'
    MBPS_L[$key]+="$mbps"$'\n'
    CPU_L[$key]+="$cpu"$'\n'
}

ISCSI_WORKLOADS=(r4k w4k r128k w128k)
declare -A ISCSI_ARGS=([r4k]="-b 4096 -q 32" [w4k]="-w -b 4096 -q 32"
    [r128k]="-s -b 131072 -q 32" [w128k]="-w -s -b 131072 -q 32")
# Each iSCSI workload runs twice: with libiscsi sending each PDU as it is
# queued (header and data in separate calls), and with the client's
# coalescing (`iscsi-load -c`: the PDUs queued in one turn leave under one
# TCP_CORK, as Linux's NVMe/TCP host sends with MSG_MORE). The first costs
# the client about 11 µs of CPU per 4 KiB write, which caps one client core
# near 90 k writes/s whatever the target.
ISCSI_CLIENTS=(plain coalesce)
declare -A CLIENT_ARGS=([plain]="" [coalesce]="-c")
declare -A CLIENT_LABEL=([plain]="" [coalesce]=", coalescing client")
declare -A NVME_ARGS=([r4k]="--pattern rand --rw read --bs 4096"
    [w4k]="--pattern rand --rw write --bs 4096"
    [r128k]="--pattern seq --rw read --bs 131072"
    [w128k]="--pattern seq --rw write --bs 131072")
declare -A LABEL=([r4k]="4 KiB random read, QD 32" [w4k]="4 KiB random write, QD 32"
    [r128k]="128 KiB sequential read, QD 32" [w128k]="128 KiB sequential write, QD 32")

# One 1 GiB volume file per target on tmpfs, pages allocated (not sparse).
make_volume() {
    dd if=/dev/zero of="$1" bs=1M count=1024 status=none
}

declare -A PID_OF ISCSI_URL NVME_ADDR
NQN=nqn.2026-12.io.zctarget.bench:zc

# --- tgt -----------------------------------------------------------------------
start_tgt() {
    local port iqn=iqn.2026-12.io.zctarget.bench:tgt pid i
    make_volume "$WORK/tgt.img"
    # tgtd cannot bind port 0 and say which port it got: one picked here.
    port=$(zc_free_ports 1)
    TGT_CP=$((20000 + RANDOM % 12000)) # tgtadm accepts up to 32767
    while [ -e "/var/run/tgtd/socket.$TGT_CP" ]; do TGT_CP=$((TGT_CP + 1)); done
    log "tgt: tgtd on 127.0.0.1:$port (control port $TGT_CP)"
    taskset -c 0 tgtd -f -C "$TGT_CP" --iscsi "portal=127.0.0.1:$port" >"$WORK/tgtd.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 100); do
        tgtadm -C "$TGT_CP" --lld iscsi --op show --mode target >/dev/null 2>&1 && break
        sleep 0.1
    done
    tgtadm -C "$TGT_CP" --lld iscsi --op new --mode target --tid 1 -T "$iqn"
    tgtadm -C "$TGT_CP" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 \
        -b "$WORK/tgt.img" --bstype rdwr
    tgtadm -C "$TGT_CP" --lld iscsi --op bind --mode target --tid 1 -I ALL
    wait_listen "$port" "$pid"
    PID_OF[tgt]=$pid
    ISCSI_URL[tgt]="iscsi://127.0.0.1:$port/$iqn/1"
}

# --- zctarget --------------------------------------------------------------------
start_zctarget() { # ENGINE
    local engine=$1 key="zc-$1" iport nport pid
    local iqn=iqn.2026-12.io.zctarget.bench:zc
    make_volume "$WORK/$key.img"
    cat >"$WORK/$key.toml" <<TOML
[server]
admin_socket = ""
iscsi_listen = ["127.0.0.1:0"]
nvme_listen = ["127.0.0.1:0"]
io_engine = "$engine"
reactors = 1
buffer_pool = "256MiB"

[[volumes]]
name = "bench"
path = "$WORK/$key.img"
size = "1GiB"

[[volumes]]
name = "ram"
backend = "memory"
size = "1GiB"

[[iscsi_targets]]
iqn = "$iqn"
luns = ["bench"]

[[nvme_subsystems]]
nqn = "$NQN"
namespaces = ["bench", "ram"]
TOML
    taskset -c 0 "$ZCTARGET" serve --config "$WORK/$key.toml" >"$WORK/$key.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # The daemon binds port 0 and logs the ports it got.
    ZC_PID=$pid ZC_LOG="$WORK/$key.log"
    # Also waits for the RAM namespace's 1 GiB to be committed (it is, before
    # "zctarget started"), or that work would land in the idle measurement.
    ZC_START_SECS=60 zc_wait_listening iscsi nvme-tcp || return 1
    iport=$ZC_ISCSI_PORT nport=$ZC_NVME_PORT ZC_PID=""
    log "zctarget ($engine): iSCSI 127.0.0.1:$iport, NVMe/TCP 127.0.0.1:$nport"
    PID_OF[$key]=$pid
    ISCSI_URL[$key]="iscsi://127.0.0.1:$iport/$iqn/0"
    NVME_ADDR[$key]="127.0.0.1:$nport"
}

# All three targets run at once (an idle target sleeps: see the idle CPU), and
# the runs of one workload alternate between them, so a burst of load from
# elsewhere on the machine spreads over all of them instead of skewing one.
START=$(date -u '+%Y-%m-%d %H:%M UTC')
start_tgt
start_zctarget uring
start_zctarget epoll
TARGETS=(tgt zc-uring zc-epoll)
sleep 1
declare -A T0
for t in "${TARGETS[@]}"; do T0[$t]=$(ticks "${PID_OF[$t]}"); done
sleep "$IDLE_SECONDS"
for t in "${TARGETS[@]}"; do
    IDLE[$t]=$(awk -v d=$(($(ticks "${PID_OF[$t]}") - T0[$t])) -v hz="$HZ" 'BEGIN { printf "%.0f", d * 1000 / hz }')
done
for w in "${ISCSI_WORKLOADS[@]}"; do
    for r in $(seq "$RUNS"); do
        for c in "${ISCSI_CLIENTS[@]}"; do
            for t in "${TARGETS[@]}"; do
                # shellcheck disable=SC2086
                run_once "$t|iscsi-$c-$w" "$r" "${PID_OF[$t]}" "$ISCSI_LOAD" -t "$RUN_SECONDS" ${CLIENT_ARGS[$c]} ${ISCSI_ARGS[$w]} "${ISCSI_URL[$t]}"
            done
        done
        for t in zc-uring zc-epoll; do
            # shellcheck disable=SC2086
            run_once "$t|nvme-$w" "$r" "${PID_OF[$t]}" "$NVME_PERF" --addr "${NVME_ADDR[$t]}" --nqn "$NQN" \
                --queues 1 --qd 32 --seconds "$RUN_SECONDS" --json ${NVME_ARGS[$w]}
        done
        case "$w" in r4k | w4k)
            for t in zc-uring zc-epoll; do
                # shellcheck disable=SC2086
                run_once "$t|nvme-ram-$w" "$r" "${PID_OF[$t]}" "$NVME_PERF" --addr "${NVME_ADDR[$t]}" --nqn "$NQN" \
                    --nsid 2 --poll --queues 1 --qd 32 --seconds "$RUN_SECONDS" --json ${NVME_ARGS[$w]}
            done
            ;;
        esac
    done
done
for key in "${!IOPS_L[@]}"; do
    IOPS[$key]=$(printf '%s' "${IOPS_L[$key]}" | median)
    MBPS[$key]=$(printf '%s' "${MBPS_L[$key]}" | median)
    CPU[$key]=$(printf '%s' "${CPU_L[$key]}" | median)
done

# --- the table -----------------------------------------------------------------
fmt_iops() { awk -v v="$1" -v m="$2" 'BEGIN { if (v == "" || v == "nan") print "—"; else printf "%.1f k (%.0f MB/s)", v / 1000, m }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "nan" || b == "nan" || b == 0) print "—"; else printf "%.2f×", a / b }'; }
cpu() { [ -n "${1:-}" ] && [ "$1" != nan ] && echo "$1" || echo "—"; }
{
    echo "Measured $START on $(hostname): $(nproc) CPUs, Linux $(uname -r); ${RUN_SECONDS} s per run, median of $RUNS run(s)."
    echo "Target on CPU 0, client on CPU 1, 127.0.0.1, a 1 GiB tmpfs volume file each (and a 1 GiB RAM namespace on zctarget for the marked rows), runs alternating between targets; IOPS (MB/s), ratio = zctarget ÷ tgt."
    echo
    echo "| workload | tgt | zctarget uring | ratio | zctarget epoll | ratio |"
    echo "|---|---:|---:|---:|---:|---:|"
    for c in "${ISCSI_CLIENTS[@]}"; do
        for w in "${ISCSI_WORKLOADS[@]}"; do
            k=iscsi-$c-$w
            t=${IOPS[tgt|$k]:-}
            u=${IOPS[zc-uring|$k]:-}
            e=${IOPS[zc-epoll|$k]:-}
            echo "| iSCSI ${LABEL[$w]}${CLIENT_LABEL[$c]} | $(fmt_iops "$t" "${MBPS[tgt|$k]:-}") | $(fmt_iops "$u" "${MBPS[zc-uring|$k]:-}") | $(ratio "$u" "$t") | $(fmt_iops "$e" "${MBPS[zc-epoll|$k]:-}") | $(ratio "$e" "$t") |"
        done
    done
    for w in "${ISCSI_WORKLOADS[@]}"; do
        t=${IOPS[tgt|iscsi-plain-$w]:-}
        u=${IOPS[zc-uring|nvme-$w]:-}
        e=${IOPS[zc-epoll|nvme-$w]:-}
        echo "| NVMe/TCP ${LABEL[$w]} (vs tgt iSCSI) | — | $(fmt_iops "$u" "${MBPS[zc-uring|nvme-$w]:-}") | $(ratio "$u" "$t") | $(fmt_iops "$e" "${MBPS[zc-epoll|nvme-$w]:-}") | $(ratio "$e" "$t") |"
    done
    for w in r4k w4k; do
        t=${IOPS[tgt|iscsi-plain-$w]:-}
        u=${IOPS[zc-uring|nvme-ram-$w]:-}
        e=${IOPS[zc-epoll|nvme-ram-$w]:-}
        echo "| NVMe/TCP ${LABEL[$w]}, RAM namespace, polling host (vs tgt iSCSI) | — | $(fmt_iops "$u" "${MBPS[zc-uring|nvme-ram-$w]:-}") | $(ratio "$u" "$t") | $(fmt_iops "$e" "${MBPS[zc-epoll|nvme-ram-$w]:-}") | $(ratio "$e" "$t") |"
    done
    echo
    echo "Target CPU per I/O (µs, utime+stime of the target process ÷ I/Os):"
    echo
    echo "| workload | tgt | zctarget uring | zctarget epoll |"
    echo "|---|---:|---:|---:|"
    for c in "${ISCSI_CLIENTS[@]}"; do
        for w in "${ISCSI_WORKLOADS[@]}"; do
            k=iscsi-$c-$w
            echo "| iSCSI ${LABEL[$w]}${CLIENT_LABEL[$c]} | $(cpu "${CPU[tgt|$k]:-}") | $(cpu "${CPU[zc-uring|$k]:-}") | $(cpu "${CPU[zc-epoll|$k]:-}") |"
        done
    done
    for w in "${ISCSI_WORKLOADS[@]}"; do
        echo "| NVMe/TCP ${LABEL[$w]} | — | $(cpu "${CPU[zc-uring|nvme-$w]:-}") | $(cpu "${CPU[zc-epoll|nvme-$w]:-}") |"
    done
    for w in r4k w4k; do
        echo "| NVMe/TCP ${LABEL[$w]}, RAM namespace, polling host | — | $(cpu "${CPU[zc-uring|nvme-ram-$w]:-}") | $(cpu "${CPU[zc-epoll|nvme-ram-$w]:-}") |"
    done
    echo
    echo "Idle target CPU over ${IDLE_SECONDS} s: tgt ${IDLE[tgt]:-?} ms, zctarget uring ${IDLE[zc-uring]:-?} ms, zctarget epoll ${IDLE[zc-epoll]:-?} ms."
    echo "NVMe/TCP 4 KiB random read ÷ tgt iSCSI 4 KiB random read: uring $(ratio "${IOPS[zc-uring|nvme-r4k]:-}" "${IOPS[tgt|iscsi-plain-r4k]:-}"), epoll $(ratio "${IOPS[zc-epoll|nvme-r4k]:-}" "${IOPS[tgt|iscsi-plain-r4k]:-}"); on the RAM namespace with a polling host (the issue's SPDK set-up): uring $(ratio "${IOPS[zc-uring|nvme-ram-r4k]:-}" "${IOPS[tgt|iscsi-plain-r4k]:-}"), epoll $(ratio "${IOPS[zc-epoll|nvme-ram-r4k]:-}" "${IOPS[tgt|iscsi-plain-r4k]:-}")."
} >"$WORK/table.md"
cat "$WORK/table.md"
if [ -n "$OUT" ]; then
    { cat "$WORK/table.md"; echo; echo "Raw runs:"; echo; sed 's/^/    /' "$RAW"; } >"$OUT"
fi
