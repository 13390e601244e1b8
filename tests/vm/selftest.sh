#!/usr/bin/env bash
# tests/vm/selftest.sh - proves the VM initiator harness and the guest test
# scripts against reference targets (no zctarget involved):
#   iSCSI   -> Debian's tgtd on the host side (targets/tgt.sh)
#   NVMe/TCP-> the guest kernel's own nvmet-tcp (NVME_LOCAL_TARGET=1)
#   trixie  -> the same NVMe/TCP scenario and guest/nvme-auth.sh (DH-HMAC-CHAP,
#              every DH group) on the trixie guest (--flavour trixie, kernel 6.12)
# Needs root. Installs tgt and socat on the host if missing (the test netns
# itself has no network). Ends with "N passed, N failed".
#
#   tests/vm/selftest.sh [--quick] [--no-trixie] [vm-initiator options...]
#     --quick      32 MiB of file data instead of 128 MiB, no fio
#     --no-trixie  skip the trixie cases (and that image's ~150 MB of downloads)
# Extra options (e.g. --timeout 900, --cache-dir DIR) go to every vm-initiator run.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VM="$HERE/vm-initiator.sh"
SIZE=128 FIO=1 TRIXIE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) SIZE=32 FIO=0; shift ;;
    --no-trixie) TRIXIE=0; shift ;;
    *) break ;;
  esac
done

"$HERE/targets/tgt.sh" --install || { echo "cannot install tgt"; exit 1; }
"$HERE/targets/restartable.sh" --install || { echo "cannot install socat"; exit 1; }
"$VM" --build-only "$@" || { echo "image build failed"; echo "0 passed, 1 failed"; exit 1; }
if [ "$TRIXIE" = 1 ]; then
  "$VM" --build-only --flavour trixie "$@" || { echo "trixie image build failed"; echo "0 passed, 1 failed"; exit 1; }
fi

TGT="$HERE/targets/tgt.sh --port 3260"
LUN="$(mktemp -u "${TMPDIR:-/tmp}/zc-selftest-lun.XXXXXX")"
trap 'rm -f "$LUN"' EXIT
pass=0 fail=0 summary=()
run() {
  local name="$1" t0 rc; shift
  echo "=================== $name"
  t0=$(date +%s)
  "$VM" "$@"; rc=$?
  if [ "$rc" = 0 ]; then pass=$((pass + 1)); summary+=("ok      $name ($(( $(date +%s) - t0 ))s)")
  else fail=$((fail + 1)); summary+=("FAILED  $name (rc $rc, $(( $(date +%s) - t0 ))s)"); fi
}
G="$HERE/guest"
run "iscsi-fs tgt" --guest-script "$G/iscsi-fs.sh" --target-cmd "$TGT" --wait-port 3260 \
    --env SIZE_MB=$SIZE "$@"
run "iscsi-fs tgt mutual CHAP" --guest-script "$G/iscsi-fs.sh" --wait-port 3260 \
    --target-cmd "$TGT --chap zcuser:zc-secret-0001 --mutual zctgt:zc-secret-0002" \
    --env CHAP_USER=zcuser --env CHAP_SECRET=zc-secret-0001 \
    --env MUTUAL_USER=zctgt --env MUTUAL_SECRET=zc-secret-0002 --env SIZE_MB=$SIZE "$@"
run "iscsi-fs tgt wrong CHAP secret refused" --guest-script "$G/iscsi-fs.sh" --wait-port 3260 \
    --target-cmd "$TGT --chap zcuser:zc-secret-0001" \
    --env CHAP_USER=zcuser --env CHAP_SECRET=not-the-secret --env EXPECT_LOGIN_FAIL=1 "$@"
run "iscsi-restart tgt" --guest-script "$G/iscsi-restart.sh" --wait-port 3260 \
    --target-cmd "$HERE/targets/restartable.sh --control-port 9999 --wait-port 3260 -- $TGT --backing $LUN" "$@"
run "nvme-fs local nvmet (digests, fio)" --guest-script "$G/nvme-fs.sh" \
    --env NVME_LOCAL_TARGET=1 --env DIGESTS=1 --env RUN_FIO=$FIO --env SIZE_MB=$SIZE "$@"
run "nvme-fs local nvmet via host netns" --guest-script "$G/nvme-fs.sh" \
    --env NVME_LOCAL_TARGET=1 --env NVMET_LISTEN=0.0.0.0 --env ADDR=10.0.2.2 --env SIZE_MB=32 \
    --hostfwd tcp:127.0.0.1:4420-:4420 "$@"
run "nvme-fs host NQN not allowed" --guest-script "$G/nvme-fs.sh" \
    --env NVME_LOCAL_TARGET=1 --env EXPECT_CONNECT_FAIL=1 "$@"
if [ "$TRIXIE" = 1 ]; then
  run "trixie: nvme-fs local nvmet (digests)" --flavour trixie --guest-script "$G/nvme-fs.sh" \
      --env NVME_LOCAL_TARGET=1 --env DIGESTS=1 --env RUN_FIO=$FIO --env SIZE_MB=$SIZE "$@"
  run "trixie: nvme-auth local nvmet (DH-HMAC-CHAP, refusals, every DH group)" --flavour trixie \
      --guest-script "$G/nvme-auth.sh" --env NVME_LOCAL_TARGET=1 "$@"
fi

echo "=================== summary"
printf '%s\n' "${summary[@]}"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
