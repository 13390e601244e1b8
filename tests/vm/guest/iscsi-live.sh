#!/bin/bash
# guest/iscsi-live.sh - live administration with the Linux iSCSI initiator,
# run inside the VM. The host runs zctarget under targets/admin-hook.sh, which
# runs `zctarget ctl ARGS` when the guest sends "ctl ARGS" to HOST_IP:CTL_PORT.
#
#   1. log in (one LUN, LUN 0), direct write + read-back on it
#   2. host: volume add VOL, iscsi lun add IQN VOL -> LUN N
#   3. the next command on LUN 0 gets the REPORTED LUNS DATA HAS CHANGED unit
#      attention: the kernel logs "LUN assignments on this target have
#      changed" (and retries the command, which succeeds); Linux does not
#      rescan by itself, so an admin runs `iscsiadm -m session -R`: LUN N's
#      disk appears (bounded wait), right size; direct write + read-back of a
#      checksummed pattern on it
#   4. host: session list shows this initiator's session to IQN
#   5. host: iscsi lun remove IQN N. What Linux 6.1 really does then:
#      - the disk stays; I/O to it fails at once (EIO: the target answers
#        ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED), LUN 0 gets the unit
#        attention again
#      - `iscsiadm -m session -R` does not remove it either: it re-reads the
#        capacity, which fails the same way, so the disk shrinks to 0 bytes
#        (a read returns no data, a write fails)
#      - so the admin deletes it (echo 1 > /sys/block/sdX/device/delete): gone;
#        another rescan does not bring it back (REPORT LUNS no longer has it)
#   6. host: the same volume back as LUN N; rescan: it reappears and still
#      holds the pattern (the data lives in the volume); removed + deleted again
#   7. LUN 0 kept working throughout (checked after each change); logout
#
# Env: PORT=3260, IQN, CTL_PORT=9999, VOL=live1, VOL_MB=16, WAIT_SECS=30
# shellcheck source=tests/vm/lib.sh
. /guest/lib.sh
PORT="${PORT:-3260}"
PORTAL="$HOST_IP:$PORT"
IQN="${IQN:-iqn.2024-01.test.zctarget:tgt1}"
VOL="${VOL:-live1}"
VOL_MB="${VOL_MB:-16}"
WAIT_SECS="${WAIT_SECS:-30}"

# the kernel's message for REPORTED LUNS DATA HAS CHANGED on LUN 0 (H:C:T:L in addr0)
ua_count() { dmesg | grep -cF "sd $addr0: LUN assignments on this target have changed"; }
lns_count() { dmesg | grep -c 'Add. Sense: Logical unit not supported'; }
# read_bytes DEV: bytes a 4 KiB direct read of DEV returns ("fail" if it errs)
read_bytes() {
  rm -f /tmp/rb
  timeout 60 dd if="$1" of=/tmp/rb bs=4096 count=1 iflag=direct 2>/dev/null || { echo fail; return; }
  stat -c %s /tmp/rb
}
# shellcheck disable=SC2317  # called through must
rescan() { timeout 60 iscsiadm -m session -R >/dev/null; }
disks() { for _d in /sys/block/sd*; do [ -e "$_d" ] && printf '%s ' "${_d##*/}"; done; }

must "start iscsid" start_iscsid
must "discovery" iscsiadm -m discovery -t sendtargets -p "$PORTAL"
must "node record" iscsi_add_node "$IQN" "$PORTAL"
must "login" iscsiadm -m node -T "$IQN" -p "$PORTAL" --login
dev0="$(iscsi_wait_lun "$IQN" 0 15)"
must "LUN 0 block device ($dev0)" test -b "$dev0"
addr0="$(basename "$(readlink -f "/sys/block/${dev0#/dev/}/device")")"
must "one LUN" test "$(disks)" = "${dev0#/dev/} "
pattern base 4
must "direct write on LUN 0" put_pattern base "$dev0"
must "direct read-back on LUN 0" check_pattern base "$dev0"
INAME="$(sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi)"

echo "== host: volume add $VOL --size ${VOL_MB}MiB, iscsi lun add $IQN $VOL"
must "host: volume add $VOL" host_ctl volume add "$VOL" --size "${VOL_MB}MiB"
uas=$(ua_count)
must "host: iscsi lun add" host_ctl iscsi lun add "$IQN" "$VOL"
cat /tmp/host_ctl.out
lun="$(awk '$1 == "LUN" { print $2 }' /tmp/host_ctl.out)"
must "host answered the new LUN number ($lun)" test -n "$lun" -a "$lun" != 0
step "LUN 0 reads back after the add" check_pattern base "$dev0"
step "kernel got REPORTED LUNS DATA HAS CHANGED on LUN 0" test "$(ua_count)" -gt "$uas"
echo "INFO: disks before the rescan: $(disks)(Linux does not rescan by itself)"
t0=$(now)
must "iscsiadm -m session -R" rescan
dev1="$(iscsi_wait_lun "$IQN" "$lun" "$WAIT_SECS")"
must "LUN $lun disk appears after the rescan ($dev1)" test -b "$dev1"
echo "   (appeared $(since "$t0")s after the rescan started)"
step "LUN $lun is ${VOL_MB} MiB" test "$(dev_bytes "$dev1")" -eq $((VOL_MB * 1048576))
pattern live $((VOL_MB / 2))
must "direct write on LUN $lun" put_pattern live "$dev1"
drop_caches
must "direct read-back on LUN $lun" check_pattern live "$dev1"
step "LUN 0 still reads back" check_pattern base "$dev0"

must "host: session list" host_ctl session list
cat /tmp/host_ctl.out
# columns: tsih initiator target address in_flight commands age_seconds
row="$(awk -v i="$INAME" -v t="$IQN" '$2 == i && $3 == t' /tmp/host_ctl.out)"
step "session list shows this initiator's session to $IQN" test -n "$row"
step "its command count is > 0" test "$(echo "$row" | awk '{ print $6 + 0 }')" -gt 0
must "host: session list --json" host_ctl --json session list
step "--json names this initiator" grep -qF "\"$INAME\"" /tmp/host_ctl.out

echo "== host: iscsi lun remove $IQN $lun"
uas=$(ua_count); lnss=$(lns_count)
must "host: iscsi lun remove" host_ctl iscsi lun remove "$IQN" "$lun"
step "direct read on the removed LUN fails (EIO)" test "$(read_bytes "$dev1")" = fail
step "... the target answered 'Logical unit not supported'" test "$(lns_count)" -gt "$lnss"
step "LUN 0 reads back after the removal" check_pattern base "$dev0"
step "kernel got REPORTED LUNS DATA HAS CHANGED on LUN 0 again" test "$(ua_count)" -gt "$uas"
must "iscsiadm -m session -R" rescan
step "after the rescan the stale disk is still there" test -b "$dev1"
step "... with 0 bytes (capacity re-read failed)" test "$(dev_bytes "$dev1")" -eq 0
step "... a read returns no data" test "$(read_bytes "$dev1")" = 0
step "... a write fails" bash -c "! timeout 60 dd if=/dev/zero of=$dev1 bs=4096 count=1 oflag=direct 2>/dev/null"
must "admin deletes it (/sys/block/${dev1#/dev/}/device/delete)" \
  bash -c "echo 1 > /sys/block/${dev1#/dev/}/device/delete"
must "the disk is gone" wait_until 10 gone "$dev1"
must "iscsiadm -m session -R again" rescan
step "the removed LUN does not come back" bash -c ". /guest/lib.sh; ! iscsi_wait_lun '$IQN' '$lun' 3"
step "one disk left" test "$(disks)" = "${dev0#/dev/} "
pattern base2 4
step "LUN 0 direct write after the removal" put_pattern base2 "$dev0"
step "LUN 0 direct read-back after the removal" check_pattern base2 "$dev0"

echo "== host: the same volume back as LUN $lun: the data is in the volume"
must "host: iscsi lun add --lun $lun" host_ctl iscsi lun add "$IQN" "$VOL" --lun "$lun"
must "iscsiadm -m session -R" rescan
dev1="$(iscsi_wait_lun "$IQN" "$lun" "$WAIT_SECS")"
must "LUN $lun disk appears again ($dev1)" test -b "$dev1"
step "LUN $lun still holds the pattern" check_pattern live "$dev1"
must "host: iscsi lun remove again" host_ctl iscsi lun remove "$IQN" "$lun"
step "direct read on the removed LUN fails again" test "$(read_bytes "$dev1")" = fail
step "admin deletes it again" bash -c "echo 1 > /sys/block/${dev1#/dev/}/device/delete"
step "the disk is gone again" wait_until 10 gone "$dev1"
step "LUN 0 reads back at the end" check_pattern base2 "$dev0"
step "session LOGGED_IN" test "$(iscsi_session_state "$IQN")" = LOGGED_IN
step "logout" iscsiadm -m node -T "$IQN" -p "$PORTAL" --logout
step "no disk left" wait_until 10 test ! -e "/sys/block/${dev0#/dev/}"
finish
