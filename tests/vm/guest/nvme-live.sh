#!/bin/bash
# guest/nvme-live.sh - live administration with the Linux NVMe/TCP host, run
# inside the VM. The host runs zctarget under targets/admin-hook.sh, which runs
# `zctarget ctl ARGS` when the guest sends "ctl ARGS" to HOST_IP:CTL_PORT.
#
#   1. connect (one namespace, NSID 1), direct write + read-back on it
#   2. host: volume add VOL, nvme namespace add NQN VOL -> NSID N
#   3. the kernel gets the Namespace Attribute Changed AEN and rescans by
#      itself: the block device of NSID N appears (bounded wait), right size;
#      a direct write + read-back of a checksummed pattern on it
#   4. host: controller list shows this host's controller (NQN, host NQN,
#      2 I/O queues + admin, writes counted)
#   5. host: nvme namespace remove NQN N -> the device disappears by itself
#   6. host: namespace add VOL --nsid N again -> it reappears with the data
#      written in 3 (the data lives in the volume); removed again, gone again
#   7. NSID 1 kept working throughout (checked after each change); disconnect
#
# Env: PORT=4420, NQN, HOSTNQN, CTL_PORT=9999, VOL=live1, VOL_MB=16,
#      WAIT_SECS=30 (per device appearance/disappearance)
# shellcheck source=tests/vm/lib.sh
. /guest/lib.sh
PORT="${PORT:-4420}"
NQN="${NQN:-nqn.2024-01.test.zctarget:nvme1}"
VOL="${VOL:-live1}"
VOL_MB="${VOL_MB:-16}"
WAIT_SECS="${WAIT_SECS:-30}"

[ -n "${HOSTNQN:-}" ] && echo "$HOSTNQN" > /etc/nvme/hostnqn
HOSTNQN="$(cat /etc/nvme/hostnqn)"

# the kernel logs this when a Namespace Attribute Changed AEN arrives
aen_count() { dmesg | grep -c 'rescanning namespaces'; }
ctrl_row() { awk -v s="$NQN" -v h="$HOSTNQN" '$2 == s && $3 == h' /tmp/host_ctl.out; }

must "modprobe nvme-tcp" modprobe -a nvme-tcp nvme-fabrics
must "nvme connect -i 2" nvme connect -t tcp -a "$HOST_IP" -s "$PORT" -n "$NQN" -i 2
dev0="$(nvme_wait_nsid "$NQN" 1 15)"
must "NSID 1 block device ($dev0)" test -b "$dev0"
# namespace block devices (not the hidden per-path nvmeXcYnZ ones)
nvme_disks() {
  _c=0
  for _d in /sys/block/nvme*n*; do [[ "${_d##*/}" =~ ^nvme[0-9]+n[0-9]+$ ]] && _c=$((_c + 1)); done
  echo "$_c"
}
must "one namespace block device" test "$(nvme_disks)" -eq 1
pattern base 4
must "direct write on NSID 1" put_pattern base "$dev0"
must "direct read-back on NSID 1" check_pattern base "$dev0"

echo "== host: volume add $VOL --size ${VOL_MB}MiB, nvme namespace add $NQN $VOL"
must "host: volume add $VOL" host_ctl volume add "$VOL" --size "${VOL_MB}MiB"
aens=$(aen_count); t0=$(now)
must "host: nvme namespace add" host_ctl nvme namespace add "$NQN" "$VOL"
cat /tmp/host_ctl.out
nsid="$(awk '$1 == "NSID" { print $2 }' /tmp/host_ctl.out)"
must "host answered the new NSID ($nsid)" test -n "$nsid" -a "$nsid" != 1
dev1="$(nvme_wait_nsid "$NQN" "$nsid" "$WAIT_SECS")"
must "NSID $nsid appears by itself within ${WAIT_SECS}s ($dev1)" test -b "$dev1"
echo "   (appeared $(since "$t0")s after the request)"
step "kernel got the Namespace Attribute Changed AEN ('rescanning namespaces')" test "$(aen_count)" -gt "$aens"
step "NSID $nsid is ${VOL_MB} MiB" test "$(dev_bytes "$dev1")" -eq $((VOL_MB * 1048576))
pattern live "$((VOL_MB / 2))"
must "direct write on NSID $nsid" put_pattern live "$dev1"
drop_caches
must "direct read-back on NSID $nsid" check_pattern live "$dev1"
step "NSID 1 still reads back after the add" check_pattern base "$dev0"

must "host: controller list" host_ctl controller list
cat /tmp/host_ctl.out
row="$(ctrl_row)"
step "controller list shows this host's controller of $NQN" test -n "$row"
# columns: cntlid subsystem host address queues in_flight reads writes
step "its queues: admin + 2 I/O" test "$(echo "$row" | awk '{ print $5 }')" = 3
step "its write count is > 0" test "$(echo "$row" | awk '{ print $8 + 0 }')" -gt 0
must "host: controller list --json" host_ctl --json controller list
step "--json names this host" grep -qF "\"$HOSTNQN\"" /tmp/host_ctl.out

echo "== host: nvme namespace remove $NQN $nsid"
aens=$(aen_count); t0=$(now)
must "host: nvme namespace remove" host_ctl nvme namespace remove "$NQN" "$nsid"
must "NSID $nsid device goes away by itself within ${WAIT_SECS}s" wait_until "$WAIT_SECS" gone "$dev1"
echo "   (gone $(since "$t0")s after the request)"
step "kernel got the AEN again" test "$(aen_count)" -gt "$aens"
step "no device for NSID $nsid left" bash -c ". /guest/lib.sh; ! nvme_dev_nsid '$NQN' '$nsid'"
step "NSID 1 still reads back after the removal" check_pattern base "$dev0"
pattern base2 4
step "NSID 1 direct write after the removal" put_pattern base2 "$dev0"
step "NSID 1 direct read-back after the removal" check_pattern base2 "$dev0"

echo "== host: the same volume back as NSID $nsid: the data is in the volume"
aens=$(aen_count)
must "host: nvme namespace add --nsid $nsid" host_ctl nvme namespace add "$NQN" "$VOL" --nsid "$nsid"
dev1="$(nvme_wait_nsid "$NQN" "$nsid" "$WAIT_SECS")"
must "NSID $nsid appears again ($dev1)" test -b "$dev1"
step "kernel got the AEN for the re-add" test "$(aen_count)" -gt "$aens"
step "NSID $nsid still holds the pattern" check_pattern live "$dev1"
aens=$(aen_count)
must "host: nvme namespace remove again" host_ctl nvme namespace remove "$NQN" "$nsid"
step "NSID $nsid device goes away again" wait_until "$WAIT_SECS" gone "$dev1"
step "kernel got the AEN for the second removal" test "$(aen_count)" -gt "$aens"
step "NSID 1 still reads back at the end" check_pattern base2 "$dev0"
state=""
for c in /sys/class/nvme/nvme*; do
  [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$NQN" ] && state="$(cat "$c/state")"
done
step "controller still live ($state), one namespace device" test "$state" = live -a "$(nvme_disks)" -eq 1
step "nvme disconnect" nvme disconnect -n "$NQN"
step "no namespace left" wait_until 10 bash -c ". /guest/lib.sh; ! nvme_dev_for '$NQN'"
finish
