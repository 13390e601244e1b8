#!/bin/bash
# guest/iscsi-fs.sh - iSCSI acceptance test, run inside the VM by vm-initiator.sh.
# Discovery, login (optionally CHAP / mutual CHAP), mkfs.ext4, mount, write
# checksummed files, umount, remount, verify every checksum, fsck, logout.
#
# Env (all optional):
#   PORT=3260                       target port on the host (10.0.2.2)
#   IQN=iqn.2024-01.test.zctarget:tgt1
#   SIZE_MB=128  FILE_MB=4          data written (SIZE_MB/FILE_MB files)
#   CHAP_USER, CHAP_SECRET          one-way CHAP (node.session.auth.username/password)
#   MUTUAL_USER, MUTUAL_SECRET      mutual CHAP (node.session.auth.username_in/password_in)
#   EXPECT_LOGIN_FAIL=1             negative test: the login must be refused
# shellcheck source=tests/vm/lib.sh
. /guest/lib.sh
PORT="${PORT:-3260}"
PORTAL="$HOST_IP:$PORT"
IQN="${IQN:-iqn.2024-01.test.zctarget:tgt1}"
SIZE_MB="${SIZE_MB:-128}"; FILE_MB="${FILE_MB:-4}"

must "start iscsid" start_iscsid
echo "== iscsiadm -m discovery -t sendtargets -p $PORTAL"
must "discovery" iscsiadm -m discovery -t sendtargets -p "$PORTAL"
must "discovery lists $IQN" bash -c "iscsiadm -m node | grep -q ' $IQN\$'"
must "node record for $PORTAL" iscsi_add_node "$IQN" "$PORTAL"

if [ -n "${CHAP_USER:-}" ]; then
  iscsi_set "$IQN" "$PORTAL" node.session.auth.authmethod CHAP
  iscsi_set "$IQN" "$PORTAL" node.session.auth.username "$CHAP_USER"
  iscsi_set "$IQN" "$PORTAL" node.session.auth.password "$CHAP_SECRET"
  if [ -n "${MUTUAL_USER:-}" ]; then
    iscsi_set "$IQN" "$PORTAL" node.session.auth.username_in "$MUTUAL_USER"
    iscsi_set "$IQN" "$PORTAL" node.session.auth.password_in "$MUTUAL_SECRET"
  fi
  echo "== CHAP user $CHAP_USER${MUTUAL_USER:+, mutual CHAP target user $MUTUAL_USER}"
fi

echo "== login $IQN"
if [ "${EXPECT_LOGIN_FAIL:-0}" = 1 ]; then
  if iscsiadm -m node -T "$IQN" -p "$PORTAL" --login; then
    step_fail "login refused" "login succeeded"
    iscsiadm -m node -T "$IQN" -p "$PORTAL" --logout
  else
    step_pass "login refused"
    iscsi_disk_for "$IQN" >/dev/null && step_fail "no disk after refused login"
  fi
  finish
fi
must "login" iscsiadm -m node -T "$IQN" -p "$PORTAL" --login
must "session LOGGED_IN" test "$(iscsi_session_state "$IQN")" = LOGGED_IN
iscsiadm -m session
dev="$(iscsi_wait_disk "$IQN" 15)"
must "LUN block device" test -b "$dev"
echo "== $dev: $(( $(cat /sys/block/"${dev#/dev/}"/size) / 2048 )) MiB, $(cat /sys/block/"${dev#/dev/}"/device/vendor) $(cat /sys/block/"${dev#/dev/}"/device/model)"

fs_roundtrip "$dev" "$SIZE_MB" "$FILE_MB"
step "logout" iscsiadm -m node -T "$IQN" -p "$PORTAL" --logout
step "no session left" bash -c "! iscsiadm -m session >/dev/null 2>&1"
finish
