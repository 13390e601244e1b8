#!/usr/bin/env bash
# targets/admin-hook.sh - run zctarget and let the guest administer it live
# through `zctarget ctl`, for the live-administration tests.
#
#   vm-initiator.sh --target-cmd "tests/vm/targets/admin-hook.sh --control-port 9999 \
#        --socket /tmp/x/admin.sock -- build/debug/zctarget serve --config /tmp/x/c.toml" \
#        --wait-port 4420 --guest-script tests/vm/guest/nvme-live.sh ...
#
# Same idea as restartable.sh: the guest cannot run anything on the host, but
# a guest connection to 10.0.2.2:N reaches 127.0.0.1:N inside the private
# netns, where this wrapper listens (socat). The guest decides when the
# exports change and learns when the change is done. One request per
# connection:
#   guest   -> "ctl ARGS..."        e.g. "ctl nvme namespace add NQN v1"
#   wrapper runs: zctarget ctl --socket SOCK ARGS...   (no shell, no eval)
#   wrapper -> "ok", then the command's standard output, then it closes
#           or "error MESSAGE" (one line: the command's stderr or the refusal)
# Only `zctarget ctl` runs. ARGS are split on blanks and each must be made of
# [A-Za-z0-9._:@+=-] (no '/', so no host paths); --socket and --path are
# refused (the guest may not pick another daemon or a host file), and the
# first command word must be one of: status config volume iscsi nvme session
# controller (after an optional --json).
#
#   --socket PATH       the daemon's admin socket ([server] admin_socket); required
#   --control-port N    127.0.0.1 port to listen on (default 9999)
#   --zctarget PATH     zctarget binary for `ctl` (default: the first word of
#                       the target command)
#   --max-requests N    requests served at most (default 50)
#   --ctl-timeout S     limit of one `zctarget ctl` run (default 60)
#   --idle-timeout S    give up waiting for a request after S (default 1800)
#   --install           only install what it needs (socat) and exit; run it on
#                       the host beforehand (the test netns has no network)
if [ "${1:-}" = --install ]; then
  command -v socat >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q socat >/dev/null
  exit $?
fi
set -uo pipefail
# shellcheck source=tests/lib/daemon.sh
. "$(dirname "$0")/../../lib/daemon.sh"
CTL_PORT=9999 SOCK="" ZC="" MAX=50 CTL_TIMEOUT=60 IDLE=1800
while [ $# -gt 0 ]; do
  case "$1" in
    --socket) SOCK="$2"; shift 2 ;;
    --control-port) CTL_PORT="$2"; shift 2 ;;
    --zctarget) ZC="$2"; shift 2 ;;
    --max-requests) MAX="$2"; shift 2 ;;
    --ctl-timeout) CTL_TIMEOUT="$2"; shift 2 ;;
    --idle-timeout) IDLE="$2"; shift 2 ;;
    --) shift; break ;;
    *) sed -n '2,33p' "$0" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "admin-hook.sh: no target command after --" >&2; exit 2; }
[ -n "$SOCK" ] || { echo "admin-hook.sh: --socket is required" >&2; exit 2; }
[ -n "$ZC" ] || ZC="$1"
[ -x "$ZC" ] || { echo "admin-hook.sh: $ZC is not an executable (use --zctarget)" >&2; exit 2; }
command -v socat >/dev/null || { echo "admin-hook.sh: socat missing: run '$0 --install' first" >&2; exit 2; }

log() { echo "admin-hook: $(date +%T) $*" >&2; }

TMP="$(mktemp -d)"
PID="" CTL_PID=""
cleanup() {
  [ -n "$CTL_PID" ] && kill "$CTL_PID" 2>/dev/null
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then zc_stop_pid "$PID" TERM 10; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 0' TERM INT

# shellcheck source=tests/vm/targets/ctl-request.sh
. "$(dirname "$0")/ctl-request.sh"

"$@" < /dev/null &
PID=$!
log "target started, pid $PID: $*"
n=0 conns=0
# bounded: MAX requests run, 4*MAX connections in all (empty/refused ones too)
while [ "$n" -lt "$MAX" ] && [ "$conns" -lt $((4 * MAX)) ] && kill -0 "$PID" 2>/dev/null; do
  conns=$((conns + 1))
  # one connection per request; socat's stdio is the coprocess pipe
  # (coproc sets CTL_PID, which cleanup kills)
  coproc CTL { exec socat -T "$IDLE" "TCP-LISTEN:$CTL_PORT,bind=127.0.0.1,reuseaddr" STDIO; }
  line=""
  if ! IFS= read -r -t "$IDLE" line <&"${CTL[0]}" && [ -z "$line" ]; then
    log "no request on the control port (idle timeout or closed)"
    kill "$CTL_PID" 2>/dev/null; wait "$CTL_PID" 2>/dev/null; CTL_PID=""
    continue
  fi
  if [ "${#line}" -gt 1024 ]; then
    reply="error request longer than 1024 bytes"
  else
    read -r -a words <<<"$line"
    if [ "${words[0]:-}" != ctl ]; then
      reply="error unknown request '${words[0]:-}' (only 'ctl ...')"
    elif why="$(check_request "${words[@]:1}")"; then
      n=$((n + 1))
      log "request #$n: zctarget ctl ${words[*]:1}"
      if timeout "$CTL_TIMEOUT" "$ZC" ctl --socket "$SOCK" "${words[@]:1}" > "$TMP/out" 2> "$TMP/err"; then
        reply=ok
        log "request #$n: ok"
      else
        rc=$?
        reply="error $(tr -s '\n\t' '  ' < "$TMP/err" | cut -c1-400 | sed 's/ *$//') (exit $rc)"
        : > "$TMP/out"
      fi
    else
      reply="error $why"
    fi
  fi
  [ "$reply" = ok ] || log "refused or failed: '${line:0:200}' -> $reply"
  { echo "$reply"; [ "$reply" = ok ] && cat "$TMP/out"; } 1>&"${CTL[1]}" 2>/dev/null
  ctl_w=${CTL[1]}; exec {ctl_w}>&-   # close our end: socat sees EOF and exits
  wait "$CTL_PID" 2>/dev/null; CTL_PID=""
done
log "served $n requests; waiting for the target"
wait "$PID"
