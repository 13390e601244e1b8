# shellcheck shell=bash
# tests/vm/lib.sh - helpers for guest scripts run by vm-initiator.sh.
# Copied into the guest as /guest/lib.sh; source it: . /guest/lib.sh
# Works in busybox ash and bash. Every wait is bounded.

# shellcheck disable=SC2034  # used by the guest scripts
HOST_IP="${STORAGE_VM_HOST:-10.0.2.2}"
_FAILS=0

# step_pass NAME / step_fail NAME [WHY]: one clear line per step
step_pass() { echo "PASS: $1"; }
step_fail() { echo "FAIL: $1${2:+ ($2)}"; _FAILS=$((_FAILS + 1)); }

# step NAME CMD...: run CMD, print PASS/FAIL NAME; returns CMD's status
# (local: CMD may run steps of its own)
step() {
  local _name="$1" _rc
  shift
  "$@"; _rc=$?
  if [ "$_rc" -eq 0 ]; then step_pass "$_name"; else step_fail "$_name" "exit $_rc"; fi
  return "$_rc"
}

# must NAME CMD...: like step, but ends the script (exit 1) on failure
must() { step "$@" || { echo "RESULT: FAIL (stopped at: $1)"; exit 1; }; }

# finish: final verdict line and exit status
finish() {
  if [ "$_FAILS" -eq 0 ]; then echo "RESULT: PASS"; exit 0; fi
  echo "RESULT: FAIL ($_FAILS failed steps)"; exit 1
}

# wait_for PATH [SECS]: wait until PATH exists (default 10 s)
wait_for() {
  _i=0; _n=$(( ${2:-10} * 10 ))
  while [ ! -e "$1" ]; do
    _i=$((_i + 1)); [ "$_i" -ge "$_n" ] && return 1; sleep 0.1
  done
}

# wait_until SECS CMD...: retry CMD every 0.5 s until it succeeds or SECS pass
wait_until() {
  _n=$(( $1 * 2 )); shift; _i=0
  until "$@" >/dev/null 2>&1; do
    _i=$((_i + 1)); [ "$_i" -ge "$_n" ] && return 1; sleep 0.5
  done
}

# ------------------------------------------------------------------ iSCSI
# start_iscsid: load the initiator modules and start iscsid (idempotent)
start_iscsid() {
  modprobe -a iscsi_tcp sd_mod || return 1
  if [ -f /run/iscsid.pid ] && kill -0 "$(cat /run/iscsid.pid)" 2>/dev/null; then return 0; fi
  iscsid -p /run/iscsid.pid || return 1
  wait_for /run/iscsid.pid 5
}

# iscsi_add_node IQN PORTAL: make sure node record IQN@PORTAL exists.
# Behind qemu's NAT a SendTargets answer carries the target's own address
# (127.0.0.1), not the 10.0.2.2 we dialled, so add the dialled portal.
iscsi_add_node() {
  iscsiadm -m node -T "$1" -p "$2" >/dev/null 2>&1 ||
    iscsiadm -m node -o new -T "$1" -p "$2" >/dev/null
}

# iscsi_set IQN PORTAL KEY VALUE: update one node setting
iscsi_set() { iscsiadm -m node -T "$1" -p "$2" -o update -n "$3" -v "$4"; }

# iscsi_session_state IQN: print the session state (LOGGED_IN, FAILED, ...)
iscsi_session_state() {
  for _s in /sys/class/iscsi_session/session*; do
    [ "$(cat "$_s/targetname" 2>/dev/null)" = "$1" ] || continue
    cat "$_s/state"; return 0
  done
  return 1
}

# iscsi_disk_for IQN: print /dev/sdX of the first LUN of a logged-in target
iscsi_disk_for() {
  for _s in /sys/class/iscsi_session/session*; do
    [ "$(cat "$_s/targetname" 2>/dev/null)" = "$1" ] || continue
    for _b in "$_s"/device/target*/*/block/*; do
      [ -e "$_b" ] && { echo "/dev/${_b##*/}"; return 0; }
    done
  done
  return 1
}

# iscsi_wait_disk IQN [SECS]: wait for the LUN's block device, print it
iscsi_wait_disk() {
  _i=0; _n=$(( ${2:-15} * 10 ))
  while [ "$_i" -lt "$_n" ]; do
    _d="$(iscsi_disk_for "$1")" && [ -b "$_d" ] && { echo "$_d"; return 0; }
    _i=$((_i + 1)); sleep 0.1
  done
  return 1
}

# iscsi_disk_lun IQN LUN: print /dev/sdX of LUN number LUN of a logged-in target
iscsi_disk_lun() {
  for _s in /sys/class/iscsi_session/session*; do
    [ "$(cat "$_s/targetname" 2>/dev/null)" = "$1" ] || continue
    for _b in "$_s"/device/target*/*:"$2"/block/*; do
      [ -e "$_b" ] && { echo "/dev/${_b##*/}"; return 0; }
    done
  done
  return 1
}

# iscsi_wait_lun IQN LUN [SECS]: wait for LUN's block device, print it
iscsi_wait_lun() {
  _i=0; _n=$(( ${3:-15} * 10 ))
  while [ "$_i" -lt "$_n" ]; do
    _d="$(iscsi_disk_lun "$1" "$2")" && [ -b "$_d" ] && { echo "$_d"; return 0; }
    _i=$((_i + 1)); sleep 0.1
  done
  return 1
}

# ------------------------------------------------------------------ NVMe
# nvme_dev_for NQN: print /dev/nvmeXnY of the first namespace of a connected
# subsystem (also with native multipath, where namespaces hang off the subsystem)
nvme_dev_for() {
  for _n in /sys/class/nvme-subsystem/*/nvme*n* /sys/class/nvme/*/nvme*n*; do
    [ -e "$_n" ] || continue
    _b="${_n##*/}"; [ -b "/dev/$_b" ] || continue
    [ "$(cat "${_n%/*}/subsysnqn" 2>/dev/null)" = "$1" ] && { echo "/dev/$_b"; return 0; }
  done
  return 1
}

# nvme_wait_dev NQN [SECS]: wait for the namespace block device, print it
nvme_wait_dev() {
  _i=0; _n=$(( ${2:-15} * 10 ))
  while [ "$_i" -lt "$_n" ]; do
    _d="$(nvme_dev_for "$1")" && { echo "$_d"; return 0; }
    _i=$((_i + 1)); sleep 0.1
  done
  return 1
}

# nvme_dev_nsid NQN NSID: print /dev/nvmeXnY of namespace NSID of a connected
# subsystem (the block device's sysfs "nsid"; its name's last number need not
# be the NSID)
nvme_dev_nsid() {
  for _n in /sys/class/nvme-subsystem/*/nvme*n* /sys/class/nvme/*/nvme*n*; do
    [ -e "$_n/nsid" ] || continue
    _b="${_n##*/}"; [ -b "/dev/$_b" ] || continue
    [ "$(cat "$_n/nsid")" = "$2" ] || continue
    [ "$(cat "${_n%/*}/subsysnqn" 2>/dev/null)" = "$1" ] && { echo "/dev/$_b"; return 0; }
  done
  return 1
}

# nvme_wait_nsid NQN NSID [SECS]: wait for namespace NSID's block device, print it
nvme_wait_nsid() {
  _i=0; _n=$(( ${3:-15} * 10 ))
  while [ "$_i" -lt "$_n" ]; do
    _d="$(nvme_dev_nsid "$1" "$2")" && { echo "$_d"; return 0; }
    _i=$((_i + 1)); sleep 0.1
  done
  return 1
}

# nvmet_setup_local NQN FILE [ADDR] [PORT] [ALLOWED_HOSTNQN]: export FILE as
# namespace 1 of NQN with the guest kernel's own nvmet-tcp target. With
# ALLOWED_HOSTNQN only that host may connect, otherwise any host.
nvmet_setup_local() {
  _nqn="$1"; _dev="$2"; _addr="${3:-127.0.0.1}"; _port="${4:-4420}"; _host="${5:-}"
  modprobe -a nvmet nvmet-tcp || return 1
  _c=/sys/kernel/config/nvmet
  mkdir -p "$_c/subsystems/$_nqn/namespaces/1" || return 1
  if [ -n "$_host" ]; then
    echo 0 > "$_c/subsystems/$_nqn/attr_allow_any_host"
    mkdir -p "$_c/hosts/$_host"
    ln -s "$_c/hosts/$_host" "$_c/subsystems/$_nqn/allowed_hosts/$_host"
  else
    echo 1 > "$_c/subsystems/$_nqn/attr_allow_any_host"
  fi
  printf '%s' "$_dev" > "$_c/subsystems/$_nqn/namespaces/1/device_path"
  [ -f "$_dev" ] && echo 1 > "$_c/subsystems/$_nqn/namespaces/1/buffered_io"
  echo 1 > "$_c/subsystems/$_nqn/namespaces/1/enable" || return 1
  mkdir -p "$_c/ports/1"
  echo tcp > "$_c/ports/1/addr_trtype"
  echo ipv4 > "$_c/ports/1/addr_adrfam"
  echo "$_addr" > "$_c/ports/1/addr_traddr"
  echo "$_port" > "$_c/ports/1/addr_trsvcid"
  ln -s "$_c/subsystems/$_nqn" "$_c/ports/1/subsystems/$_nqn"
}

# ------------------------------------------------------------------ host
# host_ctl ARGS...: ask targets/admin-hook.sh on the host (HOST_IP:CTL_PORT,
# default 9999) to run `zctarget ctl ARGS`. Returns 0 when the host answered
# "ok"; the command's output is then in /tmp/host_ctl.out. Otherwise the
# host's "error ..." line (or why it could not be asked) is in
# /tmp/host_ctl.err and printed. bash only (/dev/tcp). The hook serves one
# connection at a time and listens again right after, so connecting is retried.
host_ctl() { host_request ctl "$@"; }

# host_request WORDS...: send one request line to the host's control port
# (targets/admin-hook.sh, targets/gateways.sh) and read its answer, as
# host_ctl describes.
host_request() {
  _i=0; : > /tmp/host_ctl.out; : > /tmp/host_ctl.err
  until exec 7<>"/dev/tcp/$HOST_IP/${CTL_PORT:-9999}"; do
    _i=$((_i + 1))
    [ "$_i" -ge 20 ] && { echo "cannot connect to $HOST_IP:${CTL_PORT:-9999}" | tee /tmp/host_ctl.err; return 1; }
    sleep 0.5
  done 2>/dev/null
  echo "$*" >&7
  _st=""; IFS= read -r -t "${HOST_CTL_SECS:-90}" _st <&7
  _i=0
  while [ "$_i" -lt 1000 ] && IFS= read -r -t 10 _l <&7; do
    printf '%s\n' "$_l" >> /tmp/host_ctl.out; _i=$((_i + 1))
  done
  exec 7<&-
  [ "$_st" = ok ] && return 0
  echo "host: ${_st:-no answer}" | tee /tmp/host_ctl.err
  return 1
}

# fio_verify DEV NAME [ACTION AFTER]: crc32c-verified random writes on DEV for
# FIO_SECS (default 40) s; after AFTER seconds, ACTION (words of a
# host_request) while fio runs. Sets GAP_MS: the longest stretch without a
# completed I/O, from fio's per-I/O completion log. Returns fio's status.
# ACTION may hold several requests separated by ';', made in order.
fio_verify() {
  local dev=$1 name=$2 action=${3:-} after=${4:-0} pid rc reqs=()
  rm -f /tmp/"$name"_clat.*.log
  fio --name="$name" --filename="$dev" --rw=randwrite --bs=4k --iodepth=8 --ioengine=libaio \
    --direct=1 --size=32M --time_based --runtime="${FIO_SECS:-40}" --verify=crc32c \
    --verify_backlog=64 --verify_fatal=1 --eta=never --output=/tmp/"$name".out \
    --write_lat_log=/tmp/"$name" --log_avg_msec=0 &
  pid=$!
  if [ -n "$action" ]; then
    sleep "$after"
    local req
    IFS=';' read -r -a reqs <<<"$action"
    for req in "${reqs[@]}"; do
      # shellcheck disable=SC2086  # a request is several words
      step "host: $req" host_request $req
    done
  fi
  wait "$pid"; rc=$?
  grep -E 'err=|verify|WRITE:|READ:' /tmp/"$name".out | sed 's/^/   /'
  GAP_MS=$(cat /tmp/"$name"_clat.*.log 2>/dev/null | awk -F, '{ print $1 + 0 }' | sort -n |
    awk 'NR > 1 && $1 - p > g { g = $1 - p } { p = $1 } END { print g + 0 }')
  echo "   longest time without a completed I/O: ${GAP_MS} ms"
  return "$rc"
}

# ------------------------------------------------------------------ data
# fill_files DIR COUNT MIB: COUNT files of MIB MiB random data, sums in DIR.sha256
fill_files() {
  _i=1
  while [ "$_i" -le "$2" ]; do
    dd if=/dev/urandom of="$1/f$_i.bin" bs=1M count="$3" 2>/dev/null || return 1
    _i=$((_i + 1))
  done
  ( cd "$1" && sha256sum f*.bin ) > "/tmp/${1##*/}.sha256"
}

# verify_files DIR: check every file against the sums fill_files recorded
verify_files() {
  ( cd "$1" && sha256sum -c "/tmp/${1##*/}.sha256" ) > /tmp/verify.out 2>&1 && return 0
  grep -v ': OK$' /tmp/verify.out | head -n 20; return 1
}

# drop_caches: make the next reads go to the device
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# pattern NAME MIB: a random pattern file /tmp/NAME.pat
pattern() { dd if=/dev/urandom of="/tmp/$1.pat" bs=1M count="$2" 2>/dev/null; }
# put_pattern NAME DEV: direct write of /tmp/NAME.pat at the start of DEV
put_pattern() {
  timeout 60 dd if="/tmp/$1.pat" of="$2" bs=1M oflag=direct conv=fsync 2>/tmp/dd.err ||
    { cat /tmp/dd.err; return 1; }
}
# check_pattern NAME DEV: direct read of DEV's start matches /tmp/NAME.pat
check_pattern() {
  _mb=$(( $(stat -c %s "/tmp/$1.pat") / 1048576 ))
  _want="$(sha256sum < "/tmp/$1.pat" | cut -d' ' -f1)"
  _got="$(timeout 60 dd if="$2" bs=1M count="$_mb" iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
  [ "$_got" = "$_want" ] || { echo "   sha256 $_got, want $_want"; return 1; }
}
# dev_bytes DEV: the block device's size in bytes
dev_bytes() { echo $(( $(cat "/sys/block/${1#/dev/}/size") * 512 )); }
# now: seconds since boot, 1/100 s resolution (busybox date has no %N)
now() { cut -d" " -f1 /proc/uptime; }
# since T: seconds (one decimal) since now() said T
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# gone DEV: the block device has disappeared
gone() { [ ! -e "/sys/block/${1#/dev/}" ] && [ ! -b "$1" ]; }

# ------------------------------------------------------------------ restart
# The target restart tests (guest/*-restart.sh) against the host's
# targets/restartable.sh on HOST_IP:CTL_PORT, on the filesystem that
# restart_prepare made. bash only.

# restart_prepare DEV: mkfs.ext4 on DEV, mounted on /mnt/t, a file written
# and synced in /mnt/t/before (stops the script on failure)
restart_prepare() {
  must "mkfs.ext4" mkfs.ext4 -F -q "$1"
  mkdir -p /mnt/t
  must "mount" mount -t ext4 "$1" /mnt/t
  mkdir -p /mnt/t/before
  must "write file before restart" fill_files /mnt/t/before 1 16
  must "sync" sync
}

# restart_target_down DELAY SIGNAL: ask for a restart (DELAY s outage, the
# target stopped with SIGNAL), which must answer "down"; then start a direct
# write to /mnt/t/during.bin that the outage must hold (HELD_PID). The
# control connection stays open on fd 3 for restart_target_up.
restart_target_down() {
  dd if=/dev/urandom of=/tmp/during.pat bs=1M count=8 2>/dev/null
  echo "== asking the host to restart the target (control port $HOST_IP:$CTL_PORT, ${1}s outage, SIG$2)"
  # (one connection per restart: the wrapper serves each accepted connection once)
  exec 3<>"/dev/tcp/$HOST_IP/$CTL_PORT" || { step_fail "connect to control port"; finish; }
  echo "restart $1 $2" >&3
  _reply=""; read -r -t 30 _reply <&3
  must "target stopped (host says '$_reply')" test "$_reply" = down
  T_DOWN=$(date +%s)
  # a write issued during the outage: must be held and completed after recovery
  dd if=/tmp/during.pat of=/mnt/t/during.bin bs=1M oflag=direct conv=fsync 2>/tmp/dd-during.err &
  HELD_PID=$!
}

# outage_seen WHAT UP SECS CMD...: informational: whether CMD (printing the
# connection's state) showed something else than UP within SECS
outage_seen() {
  _what=$1; _up=$2; _n=$(( $3 * 5 )); shift 3; _seen=""
  _i=0
  while [ "$_i" -lt "$_n" ]; do
    _s="$("$@")"; [ "$_s" != "$_up" ] && { _seen="$_s"; break; }
    _i=$((_i + 1)); sleep 0.2
  done
  echo "INFO: $_what during the outage: ${_seen:-still $_up (outage not noticed yet)}"
}

# restart_target_up DELAY: the host must answer "up" (within DELAY + 60 s)
restart_target_up() {
  _reply=""; read -r -t $(( $1 + 60 )) _reply <&3
  exec 3>&-
  must "target restarted (host says '$_reply')" test "$_reply" = up
}

# restart_verify SECS WHEN: the held write completes (within SECS), the
# file written before and the data written during the outage verify, and a
# direct write after WHEN ("recovery", "reconnect") reads back
restart_verify() {
  _i=0
  while [ "$_i" -lt $(( $1 * 2 )) ] && kill -0 "$HELD_PID" 2>/dev/null; do
    _i=$((_i + 1)); sleep 0.5
  done
  if kill -0 "$HELD_PID" 2>/dev/null; then
    step_fail "write issued during the outage completed" "still blocked"; kill "$HELD_PID"
  else
    wait "$HELD_PID"; step "write issued during the outage completed" test $? -eq 0 || cat /tmp/dd-during.err
  fi
  drop_caches
  step "file written before the restart verifies" verify_files /mnt/t/before
  step "data written during the outage verifies" bash -c "cmp /tmp/during.pat /mnt/t/during.bin"
  dd if=/dev/urandom of=/tmp/after.pat bs=1M count=8 2>/dev/null
  step "direct write after $2" dd if=/tmp/after.pat of=/mnt/t/after.bin bs=1M oflag=direct conv=fsync
  step "direct read-back after $2 matches" \
    bash -c "dd if=/mnt/t/after.bin bs=1M iflag=direct 2>/dev/null | cmp - /tmp/after.pat"
}

# fs_roundtrip DEV SIZE_MB [FILE_MB]: mkfs.ext4, mount, write SIZE_MB of random
# files (FILE_MB each, default 4) with sha256sums, umount, drop caches, remount,
# verify every checksum, umount, e2fsck -fn (= fsck -fn). One PASS/FAIL line
# per step; stops the script on a failure that makes later steps meaningless.
fs_roundtrip() {
  _dev="$1"; _fmb="${3:-4}"; _nf=$(( ($2 + _fmb - 1) / _fmb ))
  must "mkfs.ext4 $_dev" mkfs.ext4 -F -q "$_dev"
  mkdir -p /mnt/t
  must "mount" mount -t ext4 "$_dev" /mnt/t
  mkdir -p /mnt/t/data
  _t0=$(date +%s)
  must "write $_nf x $_fmb MiB files with sha256sums" fill_files /mnt/t/data "$_nf" "$_fmb"
  must "sync" sync
  echo "   (write+sync: $(( $(date +%s) - _t0 ))s)"
  must "umount" umount /mnt/t
  drop_caches
  must "remount" mount -t ext4 "$_dev" /mnt/t
  _t0=$(date +%s)
  step "verify $_nf checksums after remount" verify_files /mnt/t/data
  echo "   (read+verify: $(( $(date +%s) - _t0 ))s)"
  df -h /mnt/t | tail -n1
  must "umount after verify" umount /mnt/t
  step "fsck -fn clean" e2fsck -fn "$_dev"
}
