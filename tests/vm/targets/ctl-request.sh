# shellcheck shell=bash
# tests/vm/targets/ctl-request.sh - which `zctarget ctl` requests a guest may
# make of the host (sourced by admin-hook.sh and gateways.sh).

# check_request WORDS...: 0 if the words may be passed to `zctarget ctl`,
# otherwise prints why and returns 1
check_request() {
  local w first=""
  [ $# -gt 0 ] || { echo "empty command"; return 1; }
  for w in "$@"; do
    [[ "$w" =~ ^[A-Za-z0-9._:@+=-]+$ ]] || { echo "argument '$w' has characters outside [A-Za-z0-9._:@+=-]"; return 1; }
    case "$w" in --socket*|--path*) echo "option ${w%%=*} is not allowed"; return 1 ;; esac
    if [ -z "$first" ] && [ "$w" != --json ]; then first=$w; fi
  done
  case "$first" in
    status|config|volume|iscsi|nvme|session|controller) return 0 ;;
    *) echo "command '$first' is not allowed"; return 1 ;;
  esac
}
