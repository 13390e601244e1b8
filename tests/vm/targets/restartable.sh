#!/usr/bin/env bash
# targets/restartable.sh - run a target command and restart it when the guest
# asks, for the "target restart / session recovery" tests.
#
#   vm-initiator.sh --target-cmd "tests/vm/targets/restartable.sh --control-port 9999 \
#        --wait-port 3260 -- tests/vm/targets/tgt.sh --port 3260 --backing /tmp/lun.img" \
#        --wait-port 3260 --guest-script tests/vm/guest/iscsi-restart.sh ...
#
# Why a control port: the guest cannot touch the host's files, but it can open
# TCP connections to 10.0.2.2:N, which qemu delivers to 127.0.0.1:N inside the
# private netns, where this wrapper listens (socat). So the guest decides when
# the restart happens (after it has written data), and learns when the target
# is back. Protocol, one line each way, one connection per restart:
#   guest -> "restart [DELAY_SECS [SIGNAL]]"   (defaults: --delay, --signal)
#   wrapper stops the target's process group (SIGNAL, then KILL after 10 s)
#   wrapper -> "down"
#   sleep DELAY_SECS, start the target again, wait for --wait-port
#   wrapper -> "up"   (or "error ..." if it did not come back)
# The target's data must survive the restart (e.g. tgt.sh --backing FILE).
#
#   --control-port N   127.0.0.1 port to listen on (default 9999)
#   --wait-port P      port the target serves (to know it is back)
#   --delay S          default outage length (default 3)
#   --signal SIG       default stop signal (default TERM)
#   --max-restarts N   restarts served at most (default 5)
#   --idle-timeout S   give up waiting for a request after S (default 1800)
#   --install          only install what it needs (socat) and exit; run it on
#                      the host beforehand (the test netns has no network)
# Install on the host BEFORE the test: inside vm-initiator's netns there is no
# network, so apt-get cannot work from within --target-cmd.
if [ "${1:-}" = --install ]; then
  command -v socat >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q socat >/dev/null
  exit $?
fi
set -uo pipefail
# shellcheck source=tests/lib/daemon.sh
. "$(dirname "$0")/../../lib/daemon.sh"
CTL_PORT=9999 WAIT_PORT="" DELAY=3 SIG=TERM MAX=5 IDLE=1800
while [ $# -gt 0 ]; do
  case "$1" in
    --control-port) CTL_PORT="$2"; shift 2 ;;
    --wait-port) WAIT_PORT="$2"; shift 2 ;;
    --delay) DELAY="$2"; shift 2 ;;
    --signal) SIG="$2"; shift 2 ;;
    --max-restarts) MAX="$2"; shift 2 ;;
    --idle-timeout) IDLE="$2"; shift 2 ;;
    --) shift; break ;;
    *) sed -n '2,32p' "$0" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "restartable.sh: no target command after --" >&2; exit 2; }
command -v socat >/dev/null || { echo "restartable.sh: socat missing: run '$0 --install' first" >&2; exit 2; }

log() { echo "restartable: $(date +%T) $*" >&2; }

PID=""
start_target() {
  # own session/process group, so a stop reaches the target's children too
  setsid "$@" < /dev/null &
  PID=$!
  log "target started, pid $PID: $*"
}
stop_target() {
  zc_stop_pid -g "$PID" "$1" 10
  log "target pid $PID stopped (SIG$1)"
}
wait_port() {
  [ -n "$WAIT_PORT" ] || { sleep 1; return 0; }
  zc_wait_port "$WAIT_PORT" 30
}
cleanup() { [ -n "$PID" ] && stop_target TERM; [ -n "${CTL_PID:-}" ] && kill "$CTL_PID" 2>/dev/null; }
trap cleanup EXIT
trap 'exit 0' TERM INT

start_target "$@"
n=0
while [ "$n" -lt "$MAX" ]; do
  # one connection per round; socat's stdio is the coprocess pipe
  coproc CTL { exec socat -T "$IDLE" "TCP-LISTEN:$CTL_PORT,bind=127.0.0.1,reuseaddr" STDIO; }
  if ! read -r -t "$IDLE" cmd delay sig <&"${CTL[0]}"; then
    log "no request on the control port (idle timeout or closed)"
    kill "$CTL_PID" 2>/dev/null; wait "$CTL_PID" 2>/dev/null; CTL_PID=""
    continue
  fi
  if [ "$cmd" != restart ]; then
    echo "error unknown request '$cmd'" >&"${CTL[1]}"
  else
    n=$((n + 1))
    log "restart #$n requested (delay ${delay:-$DELAY}s, SIG${sig:-$SIG})"
    stop_target "${sig:-$SIG}"
    echo down >&"${CTL[1]}"
    sleep "${delay:-$DELAY}"
    start_target "$@"
    if wait_port; then echo up >&"${CTL[1]}"; log "target is back"
    else echo "error target did not come back" >&"${CTL[1]}"; log "target did not come back"; fi
  fi
  ctl_w=${CTL[1]}; exec {ctl_w}>&-   # close our end: socat sees EOF and exits
  wait "$CTL_PID" 2>/dev/null; CTL_PID=""
done
log "served $n restarts; waiting for the target"
wait "$PID"
