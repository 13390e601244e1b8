#!/bin/bash
# guest/iscsi-multipath.sh - dm-multipath with ALUA over two zctarget
# gateways of one cluster (issue #13), run inside the VM. The host runs both
# gateways under targets/gateways.sh (control port CTL_PORT).
#
#   1. log in to the target through both gateways' portals: two SCSI disks
#      with one WWID; multipath builds one map, grouped by ALUA priority:
#      a's path in the active (optimized) group, b's in the other
#   2. fio randwrite with crc32c verify on the map; gateway VICTIM is
#      killed (SIGKILL) while it runs; fio verifies with 0 errors; the
#      longest time without a completed I/O is printed
#   3. VICTIM restarts; its session logs in again and multipathd reinstates
#      the path; the survivor's path is in the optimized group
#   4. with FAILBACK (requests to the host, e.g. release on b, acquire on a): explicit failback to a under fio verify
#
# Env: IQN, PORT_A=3260, PORT_B=3261, CTL_PORT=9999, VICTIM=a,
#      FAILBACK (host requests separated by ";"), FIO_SECS=40, KILL_AFTER=8
# shellcheck disable=SC2317  # functions run through step / wait_until
# shellcheck source=tests/vm/lib.sh
. /guest/lib.sh
PORT_A="${PORT_A:-3260}"
PORT_B="${PORT_B:-3261}"
FIO_SECS="${FIO_SECS:-40}"
KILL_AFTER="${KILL_AFTER:-8}"
VICTIM="${VICTIM:-a}"
if [ "$VICTIM" = a ]; then victim_port=$PORT_A survivor_port=$PORT_B; else victim_port=$PORT_B survivor_port=$PORT_A; fi
# no udev in the guest: libdevmapper makes the /dev/mapper nodes itself
export DM_DISABLE_UDEV=1

must "start iscsid" start_iscsid
must "device-mapper multipath and the ALUA handler" \
  modprobe -a dm-mod dm-multipath dm-round-robin dm-service-time scsi_dh_alua
for p in "$PORT_A" "$PORT_B"; do
  iscsi_add_node "$IQN" "$HOST_IP:$p"
  # fail a dead path to dm-multipath after 5 s (open-iscsi's default of
  # 120 s is for single-path disks)
  iscsi_set "$IQN" "$HOST_IP:$p" node.session.timeo.replacement_timeout 5
  iscsi_set "$IQN" "$HOST_IP:$p" node.conn[0].timeo.noop_out_interval 2
  iscsi_set "$IQN" "$HOST_IP:$p" node.conn[0].timeo.noop_out_timeout 4
  must "login through gateway port $p" iscsiadm -m node -T "$IQN" -p "$HOST_IP:$p" --login
done

# disk_on PORT: the sdX of the session whose connection goes to PORT
disk_on() {
  local s c b
  for s in /sys/class/iscsi_session/session*; do
    [ "$(cat "$s/targetname" 2>/dev/null)" = "$IQN" ] || continue
    for c in "$s"/device/connection*/iscsi_connection/connection*; do
      [ "$(cat "$c/persistent_port" 2>/dev/null)" = "$1" ] || continue
      for b in "$s"/device/target*/*/block/*; do
        [ -e "$b" ] && { echo "${b##*/}"; return 0; }
      done
    done
  done
  return 1
}
both_disks() { disk_on "$PORT_A" && disk_on "$PORT_B"; }
must "a SCSI disk through each gateway" wait_until 20 both_disks
sd_a="$(disk_on "$PORT_A")"; sd_b="$(disk_on "$PORT_B")"
echo "   gateway a: $sd_a, gateway b: $sd_b"

# No udevd in the guest: write the udev database entries its SCSI rules
# would (ID_SERIAL: multipath's WWID; ID_WWN: the property multipath's
# default blacklist exception asks of a real SCSI device), from the VPD 0x83
# designator the kernel shows in sysfs.
mkdir -p /run/udev/data
for b in /sys/block/sd*; do
  w="$(cat "$b/device/wwid")"; w="${w#naa.}"
  printf 'I:1\nE:ID_SERIAL=3%s\nE:ID_WWN=0x%s\nE:ID_BUS=scsi\n' "$w" "$w" > "/run/udev/data/b$(cat "$b/dev")"
done
mkdir -p /etc/multipath
cat > /etc/multipath.conf <<'CONF'
defaults {
    user_friendly_names no
    find_multipaths no
    polling_interval 2
}
devices {
    device {
        vendor "ZCTARGET"
        product ".*"
        path_grouping_policy group_by_prio
        prio alua
        path_checker tur
        hardware_handler "1 alua"
        failback immediate
        no_path_retry queue
    }
}
CONF
# the map first (multipath), then multipathd adopts it and checks the paths
multipath -v2 > /tmp/multipath.out 2>&1
map=""
find_map() { map="$(dmsetup ls --target multipath 2>/dev/null | awk '$2 ~ /^\(/ { print $1; exit }')"; [ -n "$map" ]; }
step "one multipath map" wait_until 10 find_map || { sed 's/^/   /' /tmp/multipath.out; finish; }
multipathd -s -v2 > /tmp/multipathd.log 2>&1 &
mpd=$!
must "multipathd runs" wait_until 10 multipathd show daemon
dev="/dev/mapper/$map"
if [ ! -b "$dev" ]; then
  for d in /sys/block/dm-*; do
    [ "$(cat "$d/dm/name" 2>/dev/null)" = "$map" ] && dev="/dev/${d##*/}"
  done
fi
must "the map's block device ($dev)" test -b "$dev"
show() { multipath -ll 2>/dev/null | sed 's/^/   /'; }
show
# group_of SD: the priority of the path group holding SD in `multipath -ll`
group_of() {
  multipath -ll 2>/dev/null | awk -v d="$1" '/prio=/ { for (i = 1; i <= NF; i++) if ($i ~ /^prio=/) p = substr($i, 6) }
    $0 ~ " "d" " { print p; exit }'
}
paths_in_map() { [ "$(multipath -ll 2>/dev/null | grep -cE ' sd[a-z]+ ')" -eq "$1" ]; }
step "two paths in the map" paths_in_map 2
# ALUA priorities (prioritizer alua): 50 active/optimized, 10 non-optimized,
# 1 standby, 0 unavailable
prio_is() { [ "$(group_of "$1")" = "$2" ]; }
prio_below() { local p; p="$(group_of "$1")"; [ -n "$p" ] && [ "$p" -lt "$2" ]; }
step "a's path in the optimized group" prio_is "$sd_a" 50
echo "   prio: a=$(group_of "$sd_a") b=$(group_of "$sd_b")"
step "b's path in a lower group" prio_below "$sd_b" 50

t0=$(now)
step "fio verify on the map while gateway $VICTIM is killed (0 errors)" \
  fio_verify "$dev" kill "kill $VICTIM" "$KILL_AFTER"
echo "FAILOVER_GAP_MS=$GAP_MS"
show
sd_s="$(disk_on "$survivor_port")"
step "the survivor's path in the optimized group" wait_until 30 prio_is "$sd_s" 50
step "$VICTIM restarts" host_request start "$VICTIM"
sd_v="$(disk_on "$victim_port")"
path_ready() { multipath -ll 2>/dev/null | grep " $1 " | grep -q 'active ready'; }
step "$VICTIM's path active again" wait_until 60 path_ready "$sd_v"
# the restarted gateway follows: its path must rank below the owner's, or
# the host would send its writes there (the alua prioritizer: 50
# Active/optimized, 10 non-optimized, +80 for the preferred group)
step "$VICTIM's path ranks below the owner's ($(group_of "$sd_v") < $(group_of "$sd_s"))" \
  prio_below "$sd_v" "$(group_of "$sd_s")"
show
if [ -n "${FAILBACK:-}" ]; then
  step "fio verify on the map during an explicit failback to a (0 errors)" \
    fio_verify "$dev" failback "$FAILBACK" "$KILL_AFTER"
  echo "FAILBACK_GAP_MS=$GAP_MS"
  # a's disk as it is now: its restart may have given the path a new SCSI
  # device, and the one found at the start is then gone from the map.
  echo "   a's disk now: $(disk_on "$PORT_A") (at the start: $sd_a)"
  a_optimized() { prio_is "$(disk_on "$PORT_A")" 50; }
  if ! step "a's path in the optimized group again" wait_until 30 a_optimized; then
    # what the host did: the paths, the ALUA handler's and multipathd's
    # view ("diag:" lines are shown in a failing suite's summary)
    multipath -ll 2>&1 | sed 's/^/diag: multipath -ll: /'
    for d in /sys/block/sd*; do
      echo "diag: ${d##*/}: access_state $(cat "$d/device/access_state" 2>/dev/null)" \
        "preferred $(cat "$d/device/preferred_path" 2>/dev/null) state $(cat "$d/device/state" 2>/dev/null)"
    done
    dmesg | grep -iE 'alua|multipath|device-mapper|connection|session' | tail -n 30 | sed 's/^/diag: dmesg: /'
    tail -n 40 /tmp/multipathd.log | sed 's/^/diag: multipathd: /'
  fi
  show
fi
echo "   (scenario took $(since "$t0") s)"
multipath -F >/dev/null 2>&1
kill "$mpd" 2>/dev/null
step "logout" iscsiadm -m node -T "$IQN" --logout
finish
