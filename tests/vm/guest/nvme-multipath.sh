#!/bin/bash
# guest/nvme-multipath.sh - Linux native NVMe multipath over two zctarget
# gateways of one cluster exporting one RBD image (issue #13), run inside the
# VM. The host runs both gateways under targets/gateways.sh (control port
# CTL_PORT: kill / start / ctl a|b).
#
#   1. connect to both gateways: one subsystem, one namespace head, two
#      paths; ANA: the owner's (a) path optimized, b's not
#   2. fio randwrite with crc32c verify on the head; gateway VICTIM is
#      killed (SIGKILL) while it runs: with VICTIM=a (the owner) I/O moves
#      to b; fio verifies with 0 errors; the longest time without a
#      completed I/O is printed
#   3. the survivor's path is optimized; VICTIM restarts and its path
#      comes back non-optimized (or inaccessible)
#   4. with FAILBACK (requests to the host, e.g. release on b, acquire on a): explicit failback to a under fio
#      verify; a's path optimized again, b's not
#
# Env: NQN, PORT_A=4420, PORT_B=4421, HOSTNQN, CTL_PORT=9999, VICTIM=a,
#      FAILBACK (host requests separated by ";"), FIO_SECS=40, KILL_AFTER=8
# shellcheck disable=SC2317  # functions run through step / wait_until
# shellcheck source=tests/vm/lib.sh
. /guest/lib.sh
PORT_A="${PORT_A:-4420}"
PORT_B="${PORT_B:-4421}"
FIO_SECS="${FIO_SECS:-40}"
KILL_AFTER="${KILL_AFTER:-8}"
VICTIM="${VICTIM:-a}"
if [ "$VICTIM" = a ]; then victim_port=$PORT_A survivor_port=$PORT_B; else victim_port=$PORT_B survivor_port=$PORT_A; fi

[ -n "${HOSTNQN:-}" ] && echo "$HOSTNQN" > /etc/nvme/hostnqn
must "modprobe nvme-tcp" modprobe -a nvme-tcp nvme-fabrics
must "native NVMe multipath is on" grep -qx Y /sys/module/nvme_core/parameters/multipath
for p in "$PORT_A" "$PORT_B"; do
  must "nvme connect to gateway port $p" nvme connect -t tcp -a "$HOST_IP" -s "$p" -n "$NQN" \
    --ctrl-loss-tmo=120 --reconnect-delay=1
done
dev="$(nvme_wait_dev "$NQN" 15)"
must "one namespace head ($dev)" test -b "$dev"

# ctrl_on PORT: the controller (nvmeN) connected to PORT
ctrl_on() {
  for c in /sys/class/nvme/nvme*; do
    [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$NQN" ] || continue
    grep -qE "trsvcid=$1(,|\$)" "$c/address" 2>/dev/null && { echo "${c##*/}"; return 0; }
  done
  return 1
}
# ana PORT: the ANA state of the path through PORT's controller
ana() {
  local c p
  c="$(ctrl_on "$1")" || { echo none; return; }
  for p in /sys/block/nvme*c*n*; do
    [ -e "$p/ana_state" ] || continue
    # a path device is nvme<subsystem>c<controller>n<namespace>
    case "${p##*/}" in nvme*c"${c#nvme}"n*) cat "$p/ana_state"; return ;; esac
  done
  echo none
}
# ana_is PORT STATE...: the path through PORT is in one of STATEs
ana_is() { local s; s="$(ana "$1")"; for w in "${@:2}"; do [ "$s" = "$w" ] && return 0; done; return 1; }
show_paths() {
  nvme list-subsys "$dev" 2>/dev/null | sed 's/^/   /'
  echo "   ANA: a=$(ana "$PORT_A") b=$(ana "$PORT_B")"
}

step "two paths in one subsystem" bash -c "[ \$(nvme list-subsys $dev | grep -c ' live') -eq 2 ]"
show_paths
must "owner a optimized" wait_until 20 ana_is "$PORT_A" optimized
step "b non-optimized or inaccessible" ana_is "$PORT_B" non-optimized inaccessible

t0=$(now)
step "fio verify while gateway $VICTIM is killed (0 errors)" fio_verify "$dev" kill "kill $VICTIM" "$KILL_AFTER"
echo "FAILOVER_GAP_MS=$GAP_MS"
show_paths
step "the survivor's path optimized" wait_until 30 ana_is "$survivor_port" optimized
step "$VICTIM restarts" host_request start "$VICTIM"
step "$VICTIM's path comes back non-optimized or inaccessible" \
  wait_until 60 ana_is "$victim_port" non-optimized inaccessible
show_paths
if [ -n "${FAILBACK:-}" ]; then
  step "fio verify during an explicit failback to a (0 errors)" \
    fio_verify "$dev" failback "$FAILBACK" "$KILL_AFTER"
  echo "FAILBACK_GAP_MS=$GAP_MS"
  step "a optimized after the failback" wait_until 30 ana_is "$PORT_A" optimized
  step "b no longer optimized" wait_until 30 ana_is "$PORT_B" non-optimized inaccessible
  show_paths
fi
echo "   (scenario took $(since "$t0") s)"
step "nvme disconnect" nvme disconnect -n "$NQN"
finish
