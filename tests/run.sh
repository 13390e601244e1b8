#!/usr/bin/env bash
# Runs every zctarget test on a Debian/Ubuntu machine with Rust installed.
# Installs what the tests need (Debian packages, rustfmt/clippy) by itself.
#
#   tests/run.sh            everything: lints, unit/property/integration tests
#
# Ends with one summary line "N passed, N failed" over all cargo test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

log() { printf '\n== %s\n' "$*"; }

# --- what the tests need ----------------------------------------------------
# losetup (util-linux): the block-device backend test attaches a loop device.
# libiscsi-bin: userspace iSCSI initiator tools used by protocol tests.
# python3: the conformance summary parser; free-port picking.
# libiscsi-dev, gcc, pkg-config: the concurrent-client stress test (C on libiscsi).
# ceph-mon, ceph-osd, ceph-common, librbd-dev, uuid-runtime: the throwaway Ceph
#   cluster of the RBD volume tests (tests/ceph/cluster.sh).
PACKAGES=(util-linux libiscsi-bin libiscsi-dev gcc pkg-config iproute2 python3
          ceph-mon ceph-osd ceph-common librbd-dev uuid-runtime)

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_packages
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  log "installing rustfmt and clippy"
  rustup component add rustfmt clippy
fi

# --- lints --------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# --- tests --------------------------------------------------------------------
out=$(mktemp)
# A throwaway Ceph cluster (one monitor, one OSD on a sparse file, loopback)
# for the RBD volume tests (backends/tests/rbd.rs, target/tests/rbd.rs), which
# run once, inside the workspace run below, and skip when
# ZCTARGET_TEST_CEPH_CONF is unset.
ceph_dir=$(mktemp -d /tmp/zctarget-ceph.XXXXXX)
trap 'DIR="$ceph_dir" tests/ceph/cluster.sh stop >/dev/null 2>&1; rm -f "$out"' EXIT
ceph_status=0
mon_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "Ceph test cluster (tests/ceph/cluster.sh, monitor on 127.0.0.1:$mon_port)"
if DIR="$ceph_dir" MON_PORT="$mon_port" tests/ceph/cluster.sh start; then
  export ZCTARGET_TEST_CEPH_CONF="$ceph_dir/ceph.conf"
else
  echo "the Ceph test cluster did not start: the RBD tests will be skipped" >&2
  ceph_status=1
fi

log "cargo test (workspace)"
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
[ "$ceph_status" -eq 0 ] || status=$ceph_status
# COMPARE AND WRITE contention (and overlapping writes) of four libiscsi
# clients on an RBD image, both engines, shorter than the file runs below.
if [ "$ceph_status" -eq 0 ]; then
  for engine in uring epoll; do
    log "iSCSI stress on an RBD volume ($engine engine)"
    set +e
    tests/iscsi/stress.sh --engine "$engine" --seconds 6 --bin build/debug/zctarget \
      --ceph-conf "$ZCTARGET_TEST_CEPH_CONF" 2>&1 | tee -a "$out"
    s=${PIPESTATUS[0]}
    set -e
    [ "$s" -eq 0 ] || status=$s
  done
  # libiscsi's MultipathIO suite, one URL per gateway of a two-gateway
  # cluster on one RBD image (outcomes gated by tests/iscsi/multipath-expected.txt).
  log "iscsi-test-cu MultipathIO across two gateways on an RBD image"
  set +e
  tests/iscsi/multipath.sh --bin build/debug/zctarget --ceph-conf "$ZCTARGET_TEST_CEPH_CONF" 2>&1 | tee -a "$out"
  s=${PIPESTATUS[0]}
  set -e
  [ "$s" -eq 0 ] || status=$s
fi
DIR="$ceph_dir" tests/ceph/cluster.sh stop
unset ZCTARGET_TEST_CEPH_CONF

# --- iSCSI conformance (libiscsi iscsi-test-cu), both engines ---------------
for engine in uring epoll; do
  log "iscsi-test-cu --dataloss ALL against zctarget ($engine engine)"
  set +e
  tests/iscsi/conformance.sh --engine "$engine" --bin build/debug/zctarget 2>&1 | tee -a "$out"
  s=${PIPESTATUS[0]}
  set -e
  [ "$s" -eq 0 ] || status=$s
done

# --- four concurrent libiscsi clients + COMPARE AND WRITE contention ---------
# (strict status on uring, eager status — status in the last Data-In — on epoll)
for run in "uring strict" "epoll eager"; do
  set -- $run
  log "iSCSI stress: 4 libiscsi clients against zctarget ($1 engine, $2 status)"
  set +e
  tests/iscsi/stress.sh --engine "$1" --policy "$2" --bin build/debug/zctarget 2>&1 | tee -a "$out"
  s=${PIPESTATUS[0]}
  set -e
  [ "$s" -eq 0 ] || status=$s
done

# --- zero-copy on a route that is not loopback (two netns, a veth pair) -------
# auto mode tries SO_ZEROCOPY and gives it up where the kernel copies; always
# mode sends every read zero-copy without spinning on a full socket.
for engine in uring epoll; do
  log "zero-copy sends over veth between two network namespaces ($engine engine)"
  set +e
  tests/net/zerocopy-veth.sh --engine "$engine" --bin build/debug/zctarget 2>&1 | tee -a "$out"
  s=${PIPESTATUS[0]}
  set -e
  [ "$s" -eq 0 ] || status=$s
done

# --- Linux kernel initiator (open-iscsi in a qemu guest), both engines -------
for args in "--engine uring" "--engine epoll --quick"; do
  log "open-iscsi in a VM against zctarget ($args)"
  set +e
  tests/vm/zctarget-iscsi.sh $args 2>&1 | tee -a "$out"
  s=${PIPESTATUS[0]}
  set -e
  [ "$s" -eq 0 ] || status=$s
done

# --- Linux kernel host (nvme-cli in a qemu guest), both engines --------------
for args in "--engine uring" "--engine epoll --quick"; do
  log "nvme-cli in a VM against zctarget ($args)"
  set +e
  tests/vm/zctarget-nvme.sh $args 2>&1 | tee -a "$out"
  s=${PIPESTATUS[0]}
  set -e
  [ "$s" -eq 0 ] || status=$s
done

# --- Linux initiators on an RBD volume (issue #12), one engine --------------
# Each scenario starts its own Ceph cluster inside the VM's network namespace
# (tests/vm/targets/ceph.sh): NVMe/TCP ext4 + remount, iSCSI zctarget restart.
log "Linux initiators in a VM against zctarget on a Ceph RBD image (--quick)"
set +e
tests/vm/zctarget-rbd.sh --engine uring --quick 2>&1 | tee -a "$out"
s=${PIPESTATUS[0]}
set -e
[ "$s" -eq 0 ] || status=$s

# --- two gateways, one volume: Linux multipath (issue #13), one engine ------
# Native NVMe multipath and dm-multipath with ALUA in the bookworm guest, over
# two zctarget gateways on one RBD image (a Ceph cluster in the VM's
# namespace): fio with crc32c verify while the owner is SIGKILLed, restart,
# explicit failback under verify.
log "Linux NVMe native multipath and dm-multipath (ALUA): owner killed, failback"
set +e
tests/vm/zctarget-multipath.sh --engine uring --backend rbd 2>&1 | tee -a "$out"
s=${PIPESTATUS[0]}
set -e
[ "$s" -eq 0 ] || status=$s

# --- NVMe/TCP in-band authentication with Linux 6.12 (issue #14) -------------
# The trixie guest: host secret + ext4, bidirectional, wrong host / controller
# secret and no secret refused, each DH group and each hash (~1.5 min).
log "nvme-cli DH-HMAC-CHAP in a trixie VM against zctarget (--quick)"
set +e
tests/vm/zctarget-nvme-auth.sh --engine epoll --quick 2>&1 | tee -a "$out"
s=${PIPESTATUS[0]}
set -e
[ "$s" -eq 0 ] || status=$s

# --- the deploy/ container image under podman, both engines -----------------
# (default seccomp profile -> epoll; deploy/seccomp-io_uring.json -> io_uring)
log "podman: the deploy/ image, iSCSI and NVMe/TCP from the host"
set +e
tests/container/podman.sh 2>&1 | tee -a "$out"
s=${PIPESTATUS[0]}
set -e
[ "$s" -eq 0 ] || status=$s

echo
awk '/^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3; next }
     /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$out"
exit "$status"
