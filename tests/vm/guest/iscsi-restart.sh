#!/bin/bash
# guest/iscsi-restart.sh - target restart / session recovery test, run inside
# the VM. The host side must run the target under targets/restartable.sh,
# which restarts it when asked on a control port (see that file).
#
#   1. log in, mkfs, write a checksummed file, sync
#   2. ask the host to restart the target (10.0.2.2:CTL_PORT), wait for "down"
#   3. while the target is down, start a direct-I/O write (it must be queued)
#   4. wait for "up", then for the session to be LOGGED_IN again (<= RECOVER_SECS)
#   5. the queued write completes, the pre-restart file verifies, a fresh
#      direct write + read-back matches; fsck clean; logout
#
# Env: PORT=3260, IQN=iqn.2024-01.test.zctarget:tgt1, CTL_PORT=9999,
#      RESTART_DELAY=3 (outage seconds), RESTART_SIGNAL=TERM (or KILL),
#      RECOVER_SECS=90, CHAP_USER/CHAP_SECRET as in iscsi-fs.sh
# shellcheck source=tests/vm/lib.sh
. /guest/lib.sh
PORT="${PORT:-3260}"
PORTAL="$HOST_IP:$PORT"
IQN="${IQN:-iqn.2024-01.test.zctarget:tgt1}"
CTL_PORT="${CTL_PORT:-9999}"
RESTART_DELAY="${RESTART_DELAY:-3}"
RESTART_SIGNAL="${RESTART_SIGNAL:-TERM}"
RECOVER_SECS="${RECOVER_SECS:-90}"

must "start iscsid" start_iscsid
must "discovery" iscsiadm -m discovery -t sendtargets -p "$PORTAL"
must "node record" iscsi_add_node "$IQN" "$PORTAL"
if [ -n "${CHAP_USER:-}" ]; then
  iscsi_set "$IQN" "$PORTAL" node.session.auth.authmethod CHAP
  iscsi_set "$IQN" "$PORTAL" node.session.auth.username "$CHAP_USER"
  iscsi_set "$IQN" "$PORTAL" node.session.auth.password "$CHAP_SECRET"
fi
# I/O is queued (not failed) for replacement_timeout seconds while the session
# is down; make that longer than the time we allow for recovery.
iscsi_set "$IQN" "$PORTAL" node.session.timeo.replacement_timeout $((RECOVER_SECS + 60))
must "login" iscsiadm -m node -T "$IQN" -p "$PORTAL" --login
dev="$(iscsi_wait_disk "$IQN" 15)"
must "LUN block device" test -b "$dev"
restart_prepare "$dev"
restart_target_down "$RESTART_DELAY" "$RESTART_SIGNAL"
# informational: did the initiator notice the outage?
outage_seen "session state" LOGGED_IN "$RESTART_DELAY" iscsi_session_state "$IQN"
restart_target_up "$RESTART_DELAY"
step "session back to LOGGED_IN within ${RECOVER_SECS}s" \
  wait_until "$RECOVER_SECS" bash -c ". /guest/lib.sh; test \"\$(iscsi_session_state '$IQN')\" = LOGGED_IN"
echo "   (recovered $(( $(date +%s) - T_DOWN ))s after the target went down)"
iscsiadm -m session -P 1 | grep -E 'Target:|State' || true
restart_verify "$RECOVER_SECS" recovery
step "umount" umount /mnt/t
step "fsck -fn clean" e2fsck -fn "$dev"
step "logout" iscsiadm -m node -T "$IQN" -p "$PORTAL" --logout
finish
