# shellcheck shell=bash
# shellcheck disable=SC2034  # ZC_* are read by the scripts that source this
# tests/lib/daemon.sh - the host side of the shell suites: find or build
# zctarget, run it in the background, learn its ports from its log, stop it
# by PID, check its log. Source it from bash (after `cd` to the repository):
#
#   . tests/lib/daemon.sh
#   ZC_BIN=$(zc_bin "$bin")                 # build when missing
#   zc_start "$work/zctarget.toml" "$work/daemon.log"
#   zc_wait_listening iscsi || exit 1        # sets ZC_ISCSI_PORT
#   ...
#   zc_stop TERM 30; [ "$ZC_STATUS" = 0 ] && zc_pool_intact
#
# Portals configured as port 0 are bound by the daemon, which logs the real
# address ("listening protocol=iscsi portal=127.0.0.1:41234"): no port is
# picked by the script and released for someone else to take first.
# Every wait is bounded. The daemon is stopped by its PID, never by name.
# Also used by tests/vm/targets/*.sh (zc_stop_pid, zc_wait_port),
# tests/vm/zctarget-*.sh (zc_scenario), tests/bench/compare.sh and
# tests/container/podman.sh (zc_free_ports, for ports that must be known
# before the server starts).

ZC_PID=""
ZC_LOG=""
ZC_STATUS=""
ZC_ISCSI_PORT=""
ZC_NVME_PORT=""
ZC_PASSED=0
ZC_FAILED=0

# zc_bin [PATH] [debug|release]: print the absolute path of the zctarget
# binary: PATH if given, else build/<profile>/zctarget; built with cargo
# (quietly) when it is not there.
zc_bin() {
  local profile=${2:-debug} bin=${1:-}
  [ -n "$bin" ] || bin=build/$profile/zctarget
  if [ ! -x "$bin" ]; then
    if [ "$profile" = release ]; then
      cargo build --release -q -p zctarget >&2 || return 1
    else
      cargo build -q -p zctarget >&2 || return 1
    fi
  fi
  [ -x "$bin" ] || { echo "zc_bin: $bin not built" >&2; return 1; }
  readlink -f "$bin"
}

# zc_free_ports N: print N distinct free loopback ports, all bound at once
# before any is released (for ports that must be known in advance, e.g.
# published by a container; a daemon on the host should bind port 0).
zc_free_ports() {
  python3 -c '
import socket, sys
ss = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    ss.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# zc_start CONFIG LOG [STDOUT]: start `$ZC_BIN serve --config CONFIG` in
# the background with RUST_LOG=info, stderr to LOG, stdout to STDOUT
# (default /dev/null). Sets ZC_PID and ZC_LOG; returns at once.
zc_start() {
  [ -n "${ZC_BIN:-}" ] || ZC_BIN=$(zc_bin "") || return 1
  ZC_LOG=$2
  ZC_STATUS=""
  ZC_ISCSI_PORT=""
  ZC_NVME_PORT=""
  RUST_LOG=${RUST_LOG:-info} "$ZC_BIN" serve --config "$1" > "${3:-/dev/null}" 2> "$ZC_LOG" &
  ZC_PID=$!
}

# zc_log_port LOG PROTOCOL: print the port of the PROTOCOL (iscsi,
# nvme-tcp) listener from the daemon's "listening" line.
zc_log_port() {
  sed -n "s/.* listening protocol=$2 portal=[^ ]*:\([0-9][0-9]*\).*/\1/p" "$1" 2>/dev/null | head -n 1
}

# zc_port_open PORT: whether 127.0.0.1:PORT accepts a TCP connection.
zc_port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# zc_wait_port PORT [SECS] [PID]: wait (default 30 s) until 127.0.0.1:PORT
# accepts; gives up early when PID (if given) has exited.
zc_wait_port() {
  local i n=$(( ${2:-30} * 5 ))
  for ((i = 0; i < n; i++)); do
    zc_port_open "$1" && return 0
    if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then return 1; fi
    sleep 0.2
  done
  return 1
}

# zc_wait_listening PROTOCOL... : wait (ZC_START_SECS, default 20 s) until
# the daemon ZC_PID logging to ZC_LOG (set by zc_start, or by the caller
# for a daemon started otherwise) logged a listener for each PROTOCOL
# (iscsi, nvme-tcp) and accepts on it, and logged "zctarget started" (the
# portals listen before the volumes open, which can take seconds — a RAM
# disk commits its memory, an rbd image is opened — and a caller measuring
# idle CPU must not count that). Sets ZC_ISCSI_PORT / ZC_NVME_PORT.
# On failure (timeout, or the daemon exited) prints the log's tail, returns 1.
zc_wait_listening() {
  local i n=$(( ${ZC_START_SECS:-20} * 10 )) p port ok
  for ((i = 0; i < n; i++)); do
    if ! kill -0 "$ZC_PID" 2>/dev/null; then
      echo "zctarget exited during start-up:" >&2
      tail -n 20 "$ZC_LOG" >&2
      return 1
    fi
    ok=1
    for p in "$@"; do
      port=$(zc_log_port "$ZC_LOG" "$p")
      if [ -z "$port" ] || ! zc_port_open "$port"; then ok=0; break; fi
      case $p in
        iscsi) ZC_ISCSI_PORT=$port ;;
        nvme-tcp) ZC_NVME_PORT=$port ;;
      esac
    done
    [ "$ok" = 1 ] && grep -q "zctarget started" "$ZC_LOG" && return 0
    sleep 0.1
  done
  echo "zctarget did not listen ($*) and start within ${ZC_START_SECS:-20}s:" >&2
  tail -n 20 "$ZC_LOG" >&2
  return 1
}

# zc_stop_pid [-g] PID [SIGNAL] [SECS]: send SIGNAL (default TERM) to PID
# (with -g to its process group, which is then SIGKILLed whatever is left
# of it), wait at most SECS (default 10) for it to exit, then SIGKILL.
# Sets ZC_STATUS: its exit status if it is our child, 0 if it is not and it
# exited, 124 if it had to be killed (then returns 1).
zc_stop_pid() {
  local group=0 pid sig secs i
  if [ "$1" = -g ]; then group=1; shift; fi
  pid=$1 sig=${2:-TERM} secs=${3:-10}
  ZC_STATUS=0
  if [ "$group" = 1 ]; then
    kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null
  else
    kill -"$sig" "$pid" 2>/dev/null
  fi
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then ZC_STATUS=124; fi
  if [ "$group" = 1 ]; then kill -KILL -- "-$pid" 2>/dev/null; fi
  if [ "$ZC_STATUS" = 124 ]; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 1
  fi
  wait "$pid" 2>/dev/null || ZC_STATUS=$?
  return 0
}

# zc_stop [SIGNAL] [SECS]: stop the daemon started by zc_start (default
# SIGTERM, 30 s); ZC_STATUS is its exit status (124: had to be killed).
# Returns 0 only for exit status 0. Nothing to do when none runs.
zc_stop() {
  [ -n "$ZC_PID" ] || return 0
  zc_stop_pid "$ZC_PID" "${1:-TERM}" "${2:-30}"
  ZC_PID=""
  [ "$ZC_STATUS" = 0 ]
}

# zc_pool_intact [LOG]: whether shutdown found every buffer back in the pool.
zc_pool_intact() {
  grep -q "buffer pool intact" "${1:-$ZC_LOG}"
}

# zc_pool_full_after_logout [LOG]: whether the last "session ended" /
# "queue ended" line reports every chunk free; prints "FREE TOTAL".
zc_pool_full_after_logout() {
  local last free total
  last=$(grep -E "session ended|queue ended" "${1:-$ZC_LOG}" | tail -n 1)
  free=$(sed -n 's/.*pool_free=\([0-9]*\).*/\1/p' <<< "$last")
  total=$(sed -n 's/.*pool_total=\([0-9]*\).*/\1/p' <<< "$last")
  echo "${free:-?} ${total:-?}"
  [ -n "$free" ] && [ "$free" = "$total" ]
}

# zc_scenario NAME LOG CMD...: run CMD with its output in LOG, print
# "PASS: NAME" or "FAIL: NAME" with the log's failure lines; counts into
# ZC_PASSED / ZC_FAILED (zc_summary prints them).
zc_scenario() {
  local name=$1 log=$2
  shift 2
  if "$@" > "$log" 2>&1; then
    echo "PASS: $name"
    ZC_PASSED=$((ZC_PASSED + 1))
  else
    echo "FAIL: $name"
    ZC_FAILED=$((ZC_FAILED + 1))
    # The failing steps first (a target log dumped after them must not
    # push them out of view), then the last errors.
    grep -E "^ *(FAIL|RESULT)" "$log" | head -n 10 | sed 's/^/    /'
    grep -E "FAIL|error" "$log" | tail -n 20 | sed 's/^/    /'
    # what a guest script gathered about its failure
    grep -E "^diag: " "$log" | head -n 100 | sed 's/^/    /'
  fi
}

# zc_summary: "N passed, N failed"; returns 1 if any failed.
zc_summary() {
  echo "$ZC_PASSED passed, $ZC_FAILED failed"
  [ "$ZC_FAILED" -eq 0 ]
}
