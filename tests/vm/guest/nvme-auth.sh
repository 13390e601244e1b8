#!/bin/bash
# guest/nvme-auth.sh - NVMe/TCP in-band authentication (DH-HMAC-CHAP) with the
# Linux host, run inside the VM by vm-initiator.sh --flavour trixie (the
# bookworm 6.1 kernel has no CONFIG_NVME_AUTH).
#
#  1. connect --dhchap-secret HOST_KEY: ext4 round trip with checksums, disconnect
#  2. connect --dhchap-secret HOST_KEY --dhchap-ctrl-secret CTRL_KEY
#     (bidirectional): the files of step 1 verify, fsck, disconnect
#  3. a wrong host secret is refused        4. a wrong controller secret is refused
#  5. no secret at all is refused (the target has one for this host)
#  6. each DH group in DHGROUPS once: connect (bidirectional), the kernel's
#     debug log names the group the target chose, a direct write reads back
#  7. the same for each hash in HASHES
#  Refused = `nvme connect` fails and no controller or namespace is left.
#
# Env:
#   PORT=4420  NQN=nqn.2024-01.test.zctarget:auth1  ADDR (10.0.2.2; 127.0.0.1 local)
#   HOSTNQN      host NQN the target has the keys for (default: generated at boot)
#   HOST_KEY     host secret, DHHC-1:xx:<base64>: (required against a remote target)
#   CTRL_KEY     controller secret (required against a remote target)
#   WRONG_HOST_KEY / WRONG_CTRL_KEY  default: fresh `nvme gen-dhchap-key` keys
#   SIZE_MB=32  FILE_MB=4   data written through the file system in step 1
#   DHGROUPS="null ffdhe2048 ffdhe3072 ffdhe4096 ffdhe6144 ffdhe8192" (""= skip 6)
#   DHGROUP_NQNS="G=NQN ..."  against a remote target: the subsystem that allows
#                only group G (the target picks the group from its allowed
#                list, so one subsystem per group); a group without an entry
#                is skipped with an INFO line. Unused in local mode.
#   HASHES="sha256 sha384 sha512" (""= skip 7)
#   HASH_NQNS="H=NQN ..."  like DHGROUP_NQNS, a subsystem allowing only hash H
#   NVME_LOCAL_TARGET=1  serve NQN from the guest kernel's own nvmet-tcp with
#                authentication (configfs hosts/HOSTNQN/dhchap_*; keys generated
#                unless given); step 6 sets hosts/HOSTNQN/dhchap_dhgroup per
#                group, step 7 dhchap_hash = hmac(H) per hash (DH group null)
#   NVMET_HASH=hmac(sha256)  local target's hash; NS_MB=256 its namespace size
# shellcheck source=tests/vm/lib.sh
. /guest/lib.sh
PORT="${PORT:-4420}"
NQN="${NQN:-nqn.2024-01.test.zctarget:auth1}"
LOCAL="${NVME_LOCAL_TARGET:-0}"
if [ "$LOCAL" = 1 ]; then ADDR="${ADDR:-127.0.0.1}"; else ADDR="${ADDR:-$HOST_IP}"; fi
SIZE_MB="${SIZE_MB:-32}"; FILE_MB="${FILE_MB:-4}"
DHGROUPS="${DHGROUPS-null ffdhe2048 ffdhe3072 ffdhe4096 ffdhe6144 ffdhe8192}"
HASHES="${HASHES-sha256 sha384 sha512}"
[ -n "${HOSTNQN:-}" ] && echo "$HOSTNQN" > /etc/nvme/hostnqn
HOSTNQN="$(cat /etc/nvme/hostnqn)"
echo "== $(uname -r), $(nvme version | head -n1), host NQN $HOSTNQN"

must "modprobe nvme-tcp nvme-auth" modprobe -a nvme-tcp nvme-fabrics nvme-auth
genkey() { nvme gen-dhchap-key -m "${1:-1}" -n "$HOSTNQN" | grep -o '^DHHC-1:[^ ]*'; }
must "nvme gen-dhchap-key works" bash -c "nvme gen-dhchap-key -m 1 -n '$HOSTNQN' | grep -q '^DHHC-1:01:.*:\$'"
if [ "$LOCAL" = 1 ]; then
  HOST_KEY="${HOST_KEY:-$(genkey 1)}"; CTRL_KEY="${CTRL_KEY:-$(genkey 3)}"
fi
must "HOST_KEY and CTRL_KEY given (DHHC-1:xx:...:)" \
  bash -c "[[ '${HOST_KEY:-}' == DHHC-1:0[0-3]:*: && '${CTRL_KEY:-}' == DHHC-1:0[0-3]:*: ]]"
WRONG_HOST_KEY="${WRONG_HOST_KEY:-$(genkey 1)}"
WRONG_CTRL_KEY="${WRONG_CTRL_KEY:-$(genkey 3)}"
echo "== host key ${HOST_KEY:0:10}..., controller key ${CTRL_KEY:0:10}..."

# the host's choices are logged with dev_dbg: make them visible (informational
# when the kernel has no dynamic debug)
DYNDBG=""
mount -t debugfs none /sys/kernel/debug 2>/dev/null
for f in /proc/dynamic_debug/control /sys/kernel/debug/dynamic_debug/control; do
  [ -w "$f" ] && echo 'file drivers/nvme/host/auth.c +p' > "$f" 2>/dev/null && { DYNDBG=$f; break; }
done
[ -n "$DYNDBG" ] || echo "INFO: no dynamic debug: the negotiated DH group is not checked"

C=/sys/kernel/config/nvmet
if [ "$LOCAL" = 1 ]; then
  must "create ${NS_MB:-256} MiB backing file" truncate -s "${NS_MB:-256}M" /tmp/nvmet-ns1.img
  must "local nvmet-tcp target $NQN on 127.0.0.1:$PORT, only $HOSTNQN allowed" \
    nvmet_setup_local "$NQN" /tmp/nvmet-ns1.img 127.0.0.1 "$PORT" "$HOSTNQN"
  must "nvmet: host key, controller key, ${NVMET_HASH:-hmac(sha256)}, DH group null" bash -c "
    printf '%s' '$HOST_KEY' > '$C/hosts/$HOSTNQN/dhchap_key' &&
    printf '%s' '$CTRL_KEY' > '$C/hosts/$HOSTNQN/dhchap_ctrl_key' &&
    printf '%s' '${NVMET_HASH:-hmac(sha256)}' > '$C/hosts/$HOSTNQN/dhchap_hash' &&
    printf null > '$C/hosts/$HOSTNQN/dhchap_dhgroup'"
fi

# ctrl_for NQN: /dev/nvmeX of a controller of subsystem NQN (any state)
ctrl_for() {
  for _c in /sys/class/nvme/nvme*; do
    [ "$(cat "$_c/subsysnqn" 2>/dev/null)" = "$1" ] && { echo "/dev/${_c##*/}"; return 0; }
  done
  return 1
}
no_ctrl() { ! ctrl_for "$1"; }
# conn NQN ARGS...: nvme connect (bounded), output in /tmp/connect.out
conn() {
  _n="$1"; shift
  dmesg -c > /dev/null
  echo "== nvme connect -t tcp -a $ADDR -s $PORT -n $_n -i 2 --hostnqn $HOSTNQN $*"
  timeout 90 nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$_n" -i 2 --hostnqn "$HOSTNQN" "$@" \
    > /tmp/connect.out 2>&1
  _rc=$?; sed 's/^/   /' /tmp/connect.out; return "$_rc"
}
# disconn NQN: disconnect, the namespace device must go
disconn() {
  step "nvme disconnect" timeout 30 nvme disconnect -n "$1"
  step "namespace device gone" wait_until 10 bash -c ". /guest/lib.sh; ! nvme_dev_for '$1'"
}
# auth_log: the host's authentication messages of the last connect
auth_log() { dmesg | grep -iE 'auth|dhchap|DH group|hash' | sed 's/^/   kernel: /'; }
# authed [G]: since the last connect the kernel's debug log shows qid 0, 1
# and 2 (admin + the 2 I/O queues) each through a DH-HMAC-CHAP transaction
# (the host logs "qid N: selected hash ..." per queue and "qid 0:
# authenticated with ..." for the admin queue only), all with DH group G if given
authed() {
  dmesg | grep -q "qid 0: authenticated with hash .* dhgroup ${1:-}" || return 1
  for _q in 0 1 2; do
    dmesg | grep -q "qid $_q: selected hash" || return 1
    [ -z "${1:-}" ] || dmesg | grep -qE "qid $_q: .*DH group $1\$" || return 1
  done
  [ -z "${1:-}" ] || ! dmesg | grep -E 'DH group [a-z0-9]+$' | grep -vqE "DH group $1\$"
}
# authed_hash H: like authed, every queue with hash hmac(H)
authed_hash() {
  dmesg | grep -q "qid 0: authenticated with hash hmac($1) " || return 1
  for _q in 0 1 2; do dmesg | grep -q "qid $_q: selected hash hmac($1)\$" || return 1; done
  ! dmesg | grep -E 'selected hash ' | grep -vq "selected hash hmac($1)\$"
}
# refused NAME NQN ARGS...: the connect must fail and leave nothing behind
refused() {
  _name="$1"; _n="$2"; shift 2
  if conn "$_n" "$@"; then
    step_fail "$_name" "connect succeeded"
    timeout 30 nvme disconnect -n "$_n" > /dev/null 2>&1
  else
    step_pass "$_name"
    auth_log | tail -n 5
    sleep 1
    step "  no namespace device for $_n" bash -c ". /guest/lib.sh; ! nvme_dev_for '$_n'"
    step "  no controller left for $_n" wait_until 10 no_ctrl "$_n"
  fi
}

# ---- 1. host secret
conn "$NQN" --dhchap-secret="$HOST_KEY"
must "connect with --dhchap-secret" test $? = 0
auth_log | grep 'authenticated with'
dev="$(nvme_wait_dev "$NQN" 15)"
must "namespace block device" test -b "$dev"
step "queue_count is 3 (-i 2 + admin)" test "$(cat "/sys/class/nvme/$(basename "$(ctrl_for "$NQN")")/queue_count")" = 3
[ -n "$DYNDBG" ] && step "admin and both I/O queues authenticated (kernel debug log)" authed
fs_roundtrip "$dev" "$SIZE_MB" "$FILE_MB"
disconn "$NQN"

# ---- 2. bidirectional
conn "$NQN" --dhchap-secret="$HOST_KEY" --dhchap-ctrl-secret="$CTRL_KEY"
must "connect with --dhchap-secret and --dhchap-ctrl-secret (bidirectional)" test $? = 0
auth_log | grep 'authenticated with'
dev="$(nvme_wait_dev "$NQN" 15)"
must "namespace block device" test -b "$dev"
[ -n "$DYNDBG" ] && step "admin and both I/O queues authenticated (kernel debug log)" authed
must "mount the file system of step 1" mount -t ext4 "$dev" /mnt/t
step "verify the checksums written in step 1" verify_files /mnt/t/data
must "umount" umount /mnt/t
step "fsck -fn clean" e2fsck -fn "$dev"
disconn "$NQN"

# ---- 3.-5. refusals
refused "wrong host secret refused" "$NQN" --dhchap-secret="$WRONG_HOST_KEY"
refused "wrong controller secret refused" "$NQN" --dhchap-secret="$HOST_KEY" --dhchap-ctrl-secret="$WRONG_CTRL_KEY"
refused "host without a secret refused" "$NQN"

# variant WHAT VALUE ATTR NQNS: steps 6 and 7. Local mode: write VALUE into
# nvmet's hosts/HOSTNQN/ATTR and use NQN; remote: the NQN of VALUE in NQNS
# ("VALUE=NQN ..."). Connect (bidirectional), the debug log shows every queue
# authenticated with VALUE, a direct write reads back, disconnect.
variant() {
  _what="$1"; _v="$2"; _n="$NQN"
  if [ "$LOCAL" = 1 ]; then
    _a="$_v"; [ "$3" = dhchap_hash ] && _a="hmac($_v)"
    step "nvmet: host's $3 $_a" bash -c "printf '%s' '$_a' > '$C/hosts/$HOSTNQN/$3'" || return
  else
    _n=""
    for _kv in $4; do [ "${_kv%%=*}" = "$_v" ] && _n="${_kv#*=}"; done
    [ -n "$_n" ] || { echo "INFO: $_what $_v skipped: no entry $_v=NQN"; return; }
  fi
  if ! conn "$_n" --dhchap-secret="$HOST_KEY" --dhchap-ctrl-secret="$CTRL_KEY"; then
    step_fail "$_what $_v: connect" "$(tail -n1 /tmp/connect.out)"; auth_log | tail -n 5; return
  fi
  step_pass "$_what $_v: connect (bidirectional)"
  auth_log | grep -E "authenticated with|DH group|selected hash"
  if [ -n "$DYNDBG" ]; then
    if [ "$3" = dhchap_hash ]; then
      step "$_what $_v: the 3 queues authenticated with hmac($_v) (kernel debug log)" authed_hash "$_v"
    else
      step "$_what $_v: the 3 queues authenticated with DH group $_v (kernel debug log)" authed "$_v"
    fi
  fi
  _d="$(nvme_wait_dev "$_n" 15)"
  if step "$_what $_v: namespace block device" test -b "$_d"; then
    step "$_what $_v: direct write + read-back" bash -c ". /guest/lib.sh; put_pattern grp $_d && check_pattern grp $_d"
  fi
  disconn "$_n"
}
pattern grp 4
# ---- 6. DH groups
for g in $DHGROUPS; do variant "DH group" "$g" dhchap_dhgroup "${DHGROUP_NQNS:-}"; done
# ---- 7. hashes (local: with DH group null, the quick one)
[ "$LOCAL" = 1 ] && [ -n "$HASHES" ] && printf null > "$C/hosts/$HOSTNQN/dhchap_dhgroup"
for h in $HASHES; do variant "hash" "$h" dhchap_hash "${HASH_NQNS:-}"; done
finish
