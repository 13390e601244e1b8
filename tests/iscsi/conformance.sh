#!/usr/bin/env bash
# Runs libiscsi's conformance suite (iscsi-test-cu, Debian libiscsi-bin)
# against zctarget on a scratch LUN, with its destructive tests.
#
#   tests/iscsi/conformance.sh [--engine uring|epoll] [--tests REGEX] [--bin PATH]
#
# CUnit counts skipped tests as passed; tests/iscsi/cu_summary.py classifies
# each test itself (real pass, skip, failure). Exit status: 0 when every
# failure is listed in tests/iscsi/known-failures.txt and real passes are at
# least the floor written there.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib/daemon.sh
. tests/lib/daemon.sh

engine=uring
tests=ALL
bin=
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=$2; shift 2 ;;
    --tests) tests=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
ZC_BIN=$(zc_bin "$bin" release)

work=$(mktemp -d)
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  zc_stop TERM 30 || true
  rm -rf "$work"
}
trap cleanup EXIT

iqn=iqn.2026-11.io.zctarget:conformance
cat > "$work/zctarget.toml" <<CFG
[server]
admin_socket = ""
iscsi_listen = ["127.0.0.1:0"]
nvme_listen = []
io_engine = "$engine"
reactors = 1
poison_on_release = true

[[volumes]]
name = "scratch"
path = "scratch.img"
size = "256MiB"

[[volumes]]
name = "scratch2"
path = "scratch2.img"
size = "64MiB"

# Only for Sanitize.Reset (see below): sparse until the test overwrites it.
[[volumes]]
name = "sanitize-scratch"
path = "sanitize-scratch.img"
size = "8GiB"

[[iscsi_targets]]
iqn = "$iqn"
luns = ["scratch", "scratch2", "sanitize-scratch"]
CFG
zc_start "$work/zctarget.toml" "$work/daemon.log"
zc_wait_listening iscsi
port=$ZC_ISCSI_PORT

url="iscsi://127.0.0.1:$port/$iqn/0"
log="$work/cu.log"
logs=("$log")
# Sanitize.Reset runs a second time, alone, against LUN 2 (8 GiB, sparse
# until written). Inside ALL it cannot pass on a target that honours
# RESERVE(6): Sanitize.Reservations, just before it, takes a RESERVE(6) on
# the suite's second session and leaves it (that session stays logged in),
# so Reset's SANITIZE gets RESERVATION CONFLICT. Alone, it needs a SANITIZE
# OVERWRITE still running ~5 s after it was sent (across task, LUN and
# target resets and a reconnect): zctarget really overwrites every block,
# which on 8 GiB takes tens of seconds, as on a real disk.
if [ "$tests" = ALL ]; then
  selection=ALL
  reset_run=1
else
  selection=$tests
  reset_run=0
fi
read -ra cu_args <<< "${CU_ARGS:-}"
set +e
timeout 1800 iscsi-test-cu "${cu_args[@]}" --dataloss --allow-sanitize -t "$selection" "$url" "$url" > "$log" 2>&1
cu_status=$?
if [ "$reset_run" = 1 ]; then
  url2="iscsi://127.0.0.1:$port/$iqn/2"
  timeout 900 iscsi-test-cu "${cu_args[@]}" --dataloss --allow-sanitize -t ALL.Sanitize.Reset "$url2" "$url2" > "$work/cu-reset.log" 2>&1
  st=$?; [ "$cu_status" -eq 0 ] && cu_status=$st
  # The lone run's verdict replaces the one from inside ALL (cu_summary.py
  # lets later logs win); both are printed.
  all_reset=$(tests/iscsi/cu_summary.py "$log" --list | awk '$2 == "Sanitize.Reset" {print $1}')
  lone_reset=$(tests/iscsi/cu_summary.py "$work/cu-reset.log" --list | awk '$2 == "Sanitize.Reset" {print $1}')
  echo "Sanitize.Reset: ${all_reset:-not run} inside ALL (RESERVE(6) left by Sanitize.Reservations), ${lone_reset:-not run} alone on the 8 GiB LUN"
  logs+=("$work/cu-reset.log")
  rm -f "$work/sanitize-scratch.img"
  # The LINUX family (the tests meant for Linux's SG_IO path, here over
  # iSCSI; a subset of ALL's test functions, multipath included), counted
  # on its own.
  timeout 900 iscsi-test-cu "${cu_args[@]}" --dataloss --allow-sanitize -t LINUX "$url" "$url" > "$work/cu-linux.log" 2>&1
  linux_summary=$(tests/iscsi/cu_summary.py "$work/cu-linux.log" --list)
fi
set -e
cat "${logs[@]}" > "${CONFORMANCE_LOG:-/tmp/zctarget-conformance.log}"
if [ -f "$work/cu-linux.log" ]; then cat "$work/cu-linux.log" >> "${CONFORMANCE_LOG:-/tmp/zctarget-conformance.log}"; fi
cp "$work/daemon.log" "${CONFORMANCE_DAEMON_LOG:-/tmp/zctarget-conformance-daemon.log}"
grep -h -A6 -E '^Run Summary' "${logs[@]}" || true
summary=$(tests/iscsi/cu_summary.py "${logs[@]}" --list)
echo "$summary" | grep -E '^(failed|skipped)' | sed 's/^/  /' || true
totals=$(echo "$summary" | tail -1)
read -r passed _ failed _ skipped _ <<< "$totals"
echo "iscsi-test-cu, $engine engine: $passed real passes, $skipped skips, $failed failing (exit $cu_status)"
if [ -n "${linux_summary:-}" ]; then
  read -r l_passed _ l_failed _ l_skipped _ <<< "$(echo "$linux_summary" | tail -1)"
  echo "iscsi-test-cu -t LINUX, $engine engine: $l_passed real passes, $l_skipped skips, $l_failed failing"
  echo "$linux_summary" | grep -E '^failed' | sed 's/^/  LINUX /' || true
  summary=$(printf '%s\n%s\n' "$summary" "$linux_summary")
fi

# Regression gate: every failure must be a known one (tests/iscsi/known-failures.txt,
# each with its reason) and real passes may not drop below the floor there.
status=0
known=tests/iscsi/known-failures.txt
floor=$(awk '/^# floor:/ {print $3}' "$known")
while read -r kind name; do
  [ "$kind" = failed ] || continue
  if ! grep -qE "^$name( |$)" "$known"; then
    echo "NEW FAILURE: $name"
    status=1
  fi
done <<< "$summary"
if [ "${passed:-0}" -lt "${floor:-0}" ]; then
  echo "REGRESSION: $passed real passes, below the floor of $floor"
  status=1
fi
exit $status
