#!/bin/bash
# guest/nvme-restart.sh - target restart / controller reconnect test for
# NVMe/TCP, run inside the VM. The host runs the target under
# targets/restartable.sh (see iscsi-restart.sh for the control protocol).
#
#   1. connect (ctrl-loss-tmo long enough), mkfs, write a checksummed file
#   2. ask the host to restart the target, wait for "down"
#   3. start a direct-I/O write during the outage (it must be held)
#   4. wait for "up", then for the controller to be "live" again
#   5. the held write completes, the pre-restart file verifies, a fresh
#      direct write reads back; fsck clean; disconnect
#
# Env: PORT=4420, NQN, CTL_PORT=9999, RESTART_DELAY=3, RECOVER_SECS=90
# shellcheck source=tests/vm/lib.sh
. /guest/lib.sh
PORT="${PORT:-4420}"
NQN="${NQN:-nqn.2024-01.test.zctarget:nvme1}"
CTL_PORT="${CTL_PORT:-9999}"
RESTART_DELAY="${RESTART_DELAY:-3}"
RECOVER_SECS="${RECOVER_SECS:-90}"

[ -n "${HOSTNQN:-}" ] && echo "$HOSTNQN" > /etc/nvme/hostnqn
must "modprobe nvme-tcp" modprobe -a nvme-tcp nvme-fabrics
must "nvme connect" nvme connect -t tcp -a "$HOST_IP" -s "$PORT" -n "$NQN" -i 2 \
  --ctrl-loss-tmo=$((RECOVER_SECS + 60)) --reconnect-delay=1
dev="$(nvme_wait_dev "$NQN" 15)"
must "namespace block device" test -b "$dev"
ctrl=""
for c in /sys/class/nvme/nvme*; do
  [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$NQN" ] && { ctrl="${c##*/}"; break; }
done
must "controller" test -n "$ctrl"
restart_prepare "$dev"
restart_target_down "$RESTART_DELAY" TERM
# shellcheck disable=SC2317  # called by outage_seen
ctrl_state() { cat "/sys/class/nvme/$ctrl/state" 2>/dev/null; }
outage_seen "controller state" live "$RESTART_DELAY" ctrl_state
restart_target_up "$RESTART_DELAY"
step "controller live again within ${RECOVER_SECS}s" \
  wait_until "$RECOVER_SECS" bash -c "test \"\$(cat /sys/class/nvme/$ctrl/state)\" = live"
echo "   (reconnected $(( $(date +%s) - T_DOWN ))s after the target went down)"
restart_verify "$RECOVER_SECS" reconnect
step "umount" umount /mnt/t
step "fsck -fn clean" e2fsck -fn "$dev"
step "nvme disconnect" nvme disconnect -n "$NQN"
finish
