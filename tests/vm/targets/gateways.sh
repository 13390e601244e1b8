#!/usr/bin/env bash
# targets/gateways.sh - two zctarget gateways of one cluster (issue #13), and
# a control port through which the guest kills, freezes, restarts and
# administers them, for the multipath failover tests.
#
#   vm-initiator.sh --target-cmd "tests/vm/targets/ceph.sh --dir D -- \
#        tests/vm/targets/gateways.sh --zctarget BIN --control-port 9999 \
#        --a A.toml:A.sock --b B.toml:B.sock" --wait-port 4420 --wait-port 4421 ...
#
# Gateway X runs `BIN serve --config X.toml`; X.sock is its admin socket
# ([server] admin_socket in X.toml). One request per connection on
# 127.0.0.1:PORT (a guest connection to 10.0.2.2:PORT arrives there):
#   kill X            SIGKILL gateway X and reap it
#   stop X / cont X   SIGSTOP / SIGCONT gateway X (split brain)
#   start X           start gateway X again (it must not be running); answers
#                     once its admin socket answers `ctl status`
#   ctl X ARGS...     zctarget ctl --socket X.sock ARGS (as admin-hook.sh:
#                     no shell, checked words, no --socket/--path)
# Answers "ok" (then the ctl output) or "error MESSAGE". X is a or b.
#
#   --max-requests N  requests served at most (default 50)
#   --idle-timeout S  give up waiting for a request after S (default 1800)
#   --install         only install what it needs (socat) and exit
if [ "${1:-}" = --install ]; then
  command -v socat >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q socat >/dev/null
  exit $?
fi
set -uo pipefail
here="$(dirname "$0")"
# shellcheck source=tests/lib/daemon.sh
. "$here/../../lib/daemon.sh"
# shellcheck source=tests/vm/targets/ctl-request.sh
. "$here/ctl-request.sh"
CTL_PORT=9999 ZC="" MAX=50 IDLE=1800
declare -A CFG SOCK PID
while [ $# -gt 0 ]; do
  case "$1" in
    --zctarget) ZC="$2"; shift 2 ;;
    --control-port) CTL_PORT="$2"; shift 2 ;;
    --a|--b) g=${1#--}; CFG[$g]=${2%%:*}; SOCK[$g]=${2#*:}; shift 2 ;;
    --max-requests) MAX="$2"; shift 2 ;;
    --idle-timeout) IDLE="$2"; shift 2 ;;
    *) sed -n '2,23p' "$0" >&2; exit 2 ;;
  esac
done
[ -x "$ZC" ] || { echo "gateways.sh: --zctarget must name the zctarget binary" >&2; exit 2; }
if [ -z "${CFG[a]:-}" ] || [ -z "${CFG[b]:-}" ]; then
  echo "gateways.sh: --a and --b are required" >&2; exit 2
fi
command -v socat >/dev/null || { echo "gateways.sh: socat missing: run '$0 --install' first" >&2; exit 2; }

log() { echo "gateways: $(date +%T.%3N) $*" >&2; }
TMP="$(mktemp -d)"
CTL_PID=""
cleanup() {
  [ -n "$CTL_PID" ] && kill "$CTL_PID" 2>/dev/null
  for g in a b; do
    p=${PID[$g]:-}
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      kill -CONT "$p" 2>/dev/null
      zc_stop_pid "$p" TERM 10
    fi
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 0' TERM INT

running() { [ -n "${PID[$1]:-}" ] && kill -0 "${PID[$1]}" 2>/dev/null; }
start_gw() {
  # its banner goes to the log, not into a reply
  "$ZC" serve --config "${CFG[$1]}" < /dev/null >&2 &
  PID[$1]=$!
  log "gateway $1 started, pid ${PID[$1]}"
}
# answers once the gateway's admin socket does (bounded: 30 s)
wait_ready() {
  local i
  for i in $(seq 1 60); do
    running "$1" || return 1
    timeout 5 "$ZC" ctl --socket "${SOCK[$1]}" status >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

# handle WORDS...: run one request; prints the reply line (then ctl output)
handle() {
  local verb=${1:-} g=${2:-}
  case "$g" in a|b) ;; *) echo "error unknown gateway '$g' (a or b)"; return ;; esac
  case "$verb" in
    kill)
      running "$g" || { echo "error gateway $g is not running"; return; }
      kill -KILL "${PID[$g]}"; wait "${PID[$g]}" 2>/dev/null
      log "gateway $g killed (SIGKILL)"; echo ok ;;
    stop|cont)
      running "$g" || { echo "error gateway $g is not running"; return; }
      kill "-${verb^^}" "${PID[$g]}"; log "gateway $g: SIG${verb^^}"; echo ok ;;
    start)
      running "$g" && { echo "error gateway $g is running"; return; }
      start_gw "$g"
      if wait_ready "$g"; then echo ok; else echo "error gateway $g did not come up"; fi ;;
    ctl)
      local why
      shift 2
      if ! why="$(check_request "$@")"; then echo "error $why"; return; fi
      if timeout 60 "$ZC" ctl --socket "${SOCK[$g]}" "$@" > "$TMP/out" 2> "$TMP/err"; then
        echo ok; cat "$TMP/out"
      else
        echo "error $(tr -s '\n\t' '  ' < "$TMP/err" | cut -c1-400 | sed 's/ *$//')"
      fi ;;
    *) echo "error unknown request '$verb'" ;;
  esac
}

start_gw a
wait_ready a || { log "gateway a did not come up"; exit 1; }
start_gw b
wait_ready b || { log "gateway b did not come up"; exit 1; }
n=0 conns=0
# bounded: MAX requests, 4*MAX connections in all
while [ "$n" -lt "$MAX" ] && [ "$conns" -lt $((4 * MAX)) ]; do
  conns=$((conns + 1))
  coproc CTL { exec socat -T "$IDLE" "TCP-LISTEN:$CTL_PORT,bind=127.0.0.1,reuseaddr" STDIO; }
  line=""
  if ! IFS= read -r -t "$IDLE" line <&"${CTL[0]}" && [ -z "$line" ]; then
    log "no request on the control port (idle timeout or closed)"
    kill "$CTL_PID" 2>/dev/null; wait "$CTL_PID" 2>/dev/null; CTL_PID=""
    continue
  fi
  n=$((n + 1))
  if [ "${#line}" -gt 1024 ]; then
    reply="error request longer than 1024 bytes"
  else
    read -r -a words <<<"$line"
    log "request #$n: ${words[*]}"
    # in this shell, not a subshell: start/kill change PID[]
    handle "${words[@]}" > "$TMP/reply"
    reply="$(cat "$TMP/reply")"
  fi
  [ "${reply%%$'\n'*}" = ok ] || log "request #$n -> ${reply:0:300}"
  printf '%s\n' "$reply" 1>&"${CTL[1]}" 2>/dev/null
  ctl_w=${CTL[1]}; exec {ctl_w}>&-
  wait "$CTL_PID" 2>/dev/null; CTL_PID=""
done
log "served $n requests; waiting for the gateways"
wait
