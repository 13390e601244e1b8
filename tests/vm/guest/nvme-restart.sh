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
must "mkfs.ext4" mkfs.ext4 -F -q "$dev"
mkdir -p /mnt/t
must "mount" mount -t ext4 "$dev" /mnt/t
mkdir -p /mnt/t/before
must "write file before restart" fill_files /mnt/t/before 1 16
must "sync" sync
dd if=/dev/urandom of=/tmp/during.pat bs=1M count=8 2>/dev/null

echo "== asking the host to restart the target (${RESTART_DELAY}s outage)"
exec 3<>"/dev/tcp/$HOST_IP/$CTL_PORT" || { step_fail "connect to control port"; finish; }
echo "restart $RESTART_DELAY TERM" >&3
read -r -t 30 reply <&3
must "target stopped (host says '$reply')" test "$reply" = down
t_down=$(date +%s)
dd if=/tmp/during.pat of=/mnt/t/during.bin bs=1M oflag=direct conv=fsync 2>/tmp/dd-during.err &
dd_pid=$!
seen=""
for _ in $(seq $(( RESTART_DELAY * 5 ))); do
  s="$(cat /sys/class/nvme/$ctrl/state 2>/dev/null)"; [ "$s" != live ] && { seen="$s"; break; }; sleep 0.2
done
echo "INFO: controller state during the outage: ${seen:-still live}"
read -r -t $((RESTART_DELAY + 60)) reply <&3
exec 3>&-
must "target restarted (host says '$reply')" test "$reply" = up
step "controller live again within ${RECOVER_SECS}s" \
  wait_until "$RECOVER_SECS" bash -c "test \"\$(cat /sys/class/nvme/$ctrl/state)\" = live"
echo "   (reconnected $(( $(date +%s) - t_down ))s after the target went down)"
for _ in $(seq $(( RECOVER_SECS * 2 ))); do kill -0 "$dd_pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$dd_pid" 2>/dev/null; then
  step_fail "write issued during the outage completed" "still blocked"; kill "$dd_pid"
else
  wait "$dd_pid"; step "write issued during the outage completed" test $? -eq 0 || cat /tmp/dd-during.err
fi
drop_caches
step "file written before the restart verifies" verify_files /mnt/t/before
step "data written during the outage verifies" bash -c "cmp /tmp/during.pat /mnt/t/during.bin"
dd if=/dev/urandom of=/tmp/after.pat bs=1M count=8 2>/dev/null
step "direct write after reconnect" dd if=/tmp/after.pat of=/mnt/t/after.bin bs=1M oflag=direct conv=fsync
step "direct read-back after reconnect matches" \
  bash -c "dd if=/mnt/t/after.bin bs=1M iflag=direct 2>/dev/null | cmp - /tmp/after.pat"
step "umount" umount /mnt/t
step "fsck -fn clean" e2fsck -fn "$dev"
step "nvme disconnect" nvme disconnect -n "$NQN"
finish
