#!/usr/bin/env bash
# vm-initiator.sh - run a script inside a throw-away qemu guest that has the
# Linux kernel's storage initiators (iscsi_tcp + open-iscsi, nvme-tcp +
# nvme-cli), and exit with that script's exit status.
#
# The guest is Debian bookworm's own kernel plus an initramfs assembled here
# from Debian packages (busybox, bash, kmod, open-iscsi, nvme-cli, e2fsprogs,
# util-linux's blkdiscard, fio; on bookworm also multipath-tools). Nothing is installed into the guest at run
# time; the image is built once and cached outside the repository.
# --flavour trixie builds the same image from Debian trixie's packages instead
# (kernel 6.12 with NVMe in-band authentication, nvme-cli 2.13); its package
# lists live in a private apt state dir in the cache, the host's apt sources
# and packages are not touched.
#
# Networking: a private network namespace (loopback only) is created per run.
# The target command and qemu both run in it. qemu's user-mode network gives
# the guest 10.0.2.15; guest connections to 10.0.2.2:PORT arrive at
# 127.0.0.1:PORT inside the namespace. Nothing leaves the namespace.
#
# See README.md next to this file. Exit status: the guest script's status,
# 124 when --timeout hit, 125 on a setup error.
set -euo pipefail

ME=vm-initiator
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE_VERSION=4            # bump when the image layout or /init changes

# ------------------------------------------------------------------ options
CACHE_DIR="${ZCTARGET_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zctarget-vm}"
GUEST_SCRIPT=""
TARGET_CMD=""
WAIT_PORTS=()
WAIT_TIMEOUT=30
GUEST_ENV=()
GUEST_FILES=()
HOSTFWDS=()
VM_TIMEOUT=600
MEM_MB=1536
SMP=2
ACCEL=auto
REBUILD=0
BUILD_ONLY=0
WITH_FIO=1
QUIET_KERNEL=1
SHOW_TARGET_LOG=onfail
KEEP_TARGET_LOG=
KERNEL_PKG=linux-image-amd64
QEMU_BIN="${QEMU_BIN:-}"
FLAVOUR="${ZCTARGET_VM_FLAVOUR:-bookworm}"

# What goes into the guest. Only GUEST_BINS and the shared libraries they link
# against are copied out of the unpacked packages; busybox provides the rest.
GUEST_PKGS=(busybox-static bash kmod open-iscsi nvme-cli e2fsprogs util-linux)
GUEST_BINS=(bin/busybox bin/bash bin/kmod
            sbin/iscsiadm sbin/iscsid sbin/iscsi-iname usr/sbin/nvme
            sbin/mke2fs sbin/e2fsck sbin/dumpe2fs sbin/tune2fs
            sbin/blkdiscard)
# Kernel modules (their dependencies are added from modules.dep).
GUEST_MODULES=(virtio_pci virtio_net configfs loop sd_mod ext4
               crc32c_generic crc32c-intel crct10dif_generic crct10dif-pclmul
               crc64_rocksoft_generic crc64-rocksoft t10-pi
               scsi_transport_iscsi libiscsi libiscsi_tcp iscsi_tcp
               nvme-core nvme-fabrics nvme-tcp nvmet nvmet-tcp)
# Library packages we never want to pull in (scripting stacks, PAM, ...).
SKIP_PKGS_RE='^(libperl.*|lib.*-perl|libpython.*|libpam.*|libsemanage.*|libselinux1-dev|libslang2|libnewt.*|libtextwrap1|libdebian-installer.*|libelogind0|libgdbm.*|libdb5\.3|libklibc)$'

usage() {
  cat <<'EOF'
Usage: vm-initiator.sh --guest-script FILE [options]

Boots Debian bookworm's kernel with an initramfs holding open-iscsi, nvme-cli,
e2fsprogs, blkdiscard, fio, bash and busybox under qemu, runs FILE in the guest
as root, prints the guest console and exits with FILE's exit status.

  --guest-script FILE   script run in the guest (not needed with --build-only)
  --target-cmd 'CMD'    started with 'bash -c' in the private netns before the
                        VM boots (the target under test); its process group is
                        terminated when the VM has finished
  --wait-port PORT      before booting, wait until 127.0.0.1:PORT accepts TCP in
                        the netns (repeatable)
  --wait-timeout SECS   limit for --wait-port (default 30)
  --env KEY=VALUE       exported in the guest script's environment (repeatable)
  --file SRC[:DST]      copy host file SRC into the guest (default DST:
                        /guest/files/<basename>) (repeatable)
  --hostfwd SPEC        qemu hostfwd, exposes a guest port in the netns, e.g.
                        tcp:127.0.0.1:4420-:4420 (repeatable)
  --timeout SECS        wall-clock limit of the VM (default 600) -> exit 124
  --mem MB              guest memory (default 1536)
  --smp N               guest CPUs (default 2)
  --kvm | --tcg         force the accelerator (default: KVM only if really usable)
  --no-fio              image without fio (fewer downloads)
  --flavour NAME        guest packages: bookworm (default; kernel 6.1) or trixie
                        (kernel 6.12: NVMe in-band auth, nvme-cli 2.13); also
                        $ZCTARGET_VM_FLAVOUR
  --cache-dir DIR       default ${XDG_CACHE_HOME:-$HOME/.cache}/zctarget-vm
                        (or $ZCTARGET_VM_CACHE)
  --rebuild             rebuild the cached image
  --build-only          download/build image and qemu, then exit
  --verbose-kernel      do not boot the guest kernel with 'quiet'
  --show-target-log     print the target command's log also on success
  --keep-target-log F   copy the target command's whole log to F at the end
  -h, --help

In the guest: /guest/script, /guest/lib.sh (helpers, see tests/vm/lib.sh),
/guest/files/*, STORAGE_VM_HOST=10.0.2.2 and the --env values exported.
Exit status: guest script's status; 124 VM timeout; 125 setup error.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --guest-script)   GUEST_SCRIPT="$2"; shift 2 ;;
    --target-cmd)     TARGET_CMD="$2"; shift 2 ;;
    --wait-port)      WAIT_PORTS+=("$2"); shift 2 ;;
    --wait-timeout)   WAIT_TIMEOUT="$2"; shift 2 ;;
    --env)            GUEST_ENV+=("$2"); shift 2 ;;
    --file)           GUEST_FILES+=("$2"); shift 2 ;;
    --hostfwd)        HOSTFWDS+=("$2"); shift 2 ;;
    --timeout)        VM_TIMEOUT="$2"; shift 2 ;;
    --mem)            MEM_MB="$2"; shift 2 ;;
    --smp)            SMP="$2"; shift 2 ;;
    --kvm)            ACCEL=kvm; shift ;;
    --tcg)            ACCEL=tcg; shift ;;
    --no-fio)         WITH_FIO=0; shift ;;
    --flavour)        FLAVOUR="$2"; shift 2 ;;
    --cache-dir)      CACHE_DIR="$2"; shift 2 ;;
    --rebuild)        REBUILD=1; shift ;;
    --build-only)     BUILD_ONLY=1; shift ;;
    --verbose-kernel) QUIET_KERNEL=0; shift ;;
    --show-target-log) SHOW_TARGET_LOG=always; shift ;;
    --keep-target-log) KEEP_TARGET_LOG="$2"; shift 2 ;;
    -h|--help)        usage; exit 0 ;;
    *) usage >&2; printf '[%s] ERROR: unknown argument: %s\n' "$ME" "$1" >&2; exit 125 ;;
  esac
done

log()  { printf '[%s] %s\n' "$ME" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$ME" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$ME" "$*" >&2; exit 125; }
now()  { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$WITH_FIO" = 1 ] && { GUEST_PKGS+=(fio); GUEST_BINS+=(usr/bin/fio); }
case "$FLAVOUR" in
  # dm-multipath with ALUA for iSCSI (issue #13): multipath-tools' CLI and
  # daemon, the path checker and prioritizers it loads (dlopen, so listed),
  # dmsetup, and the device-mapper / ALUA device handler modules
  bookworm) GUEST_PKGS+=(multipath-tools dmsetup)
            GUEST_BINS+=(sbin/multipath sbin/multipathd sbin/dmsetup
                         lib/multipath/libchecktur.so lib/multipath/libcheckdirectio.so
                         lib/multipath/libprioalua.so lib/multipath/libprioconst.so
                         lib/multipath/libpriosysfs.so)
            GUEST_MODULES+=(dm-mod dm-multipath dm-round-robin dm-service-time dm-queue-length
                            scsi_dh_alua) ;;
  # nvme-auth is also pulled in by nvme-core's dependencies; named so that a
  # kernel without it warns at build time
  trixie) GUEST_MODULES+=(nvme-auth nvme-keyring) ;;
  *) die "unknown --flavour '$FLAVOUR' (bookworm or trixie)" ;;
esac
[ "$BUILD_ONLY" = 1 ] || [ -n "$GUEST_SCRIPT" ] || { usage >&2; die "--guest-script is required"; }
[ -z "$GUEST_SCRIPT" ] || [ -r "$GUEST_SCRIPT" ] || die "guest script not readable: $GUEST_SCRIPT"
[ "$(id -u)" = 0 ] || die "must run as root (network namespace, device nodes in the initramfs)"
[ -r "$HERE/lib.sh" ] || die "missing $HERE/lib.sh"

# ------------------------------------------------------------------ host tools
# Debian packages providing the host tools used below; installed when missing.
ensure_host_tools() {
  local need=() t
  for t in ip:iproute2 dpkg-deb:dpkg apt-get:apt cpio:cpio gzip:gzip awk:gawk \
           timeout:coreutils setsid:util-linux sha256sum:coreutils; do
    command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
  done
  # trixie's kernel modules are xz-compressed
  [ "$FLAVOUR" = bookworm ] || command -v xz >/dev/null 2>&1 || need+=(xz-utils)
  [ ${#need[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing host tools (${need[*]}) and no apt-get"
  log "installing host packages: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null \
      || die "apt-get install ${need[*]} failed"
  }
}
ensure_host_tools

# The cache must never end up inside a git work tree (the repo).
mkdir -p "$CACHE_DIR/debs" "$CACHE_DIR/images"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd -P)"
if git -C "$CACHE_DIR" rev-parse --show-toplevel >/dev/null 2>&1; then
  die "cache dir $CACHE_DIR is inside a git work tree; use --cache-dir elsewhere"
fi
DEBS="$CACHE_DIR/debs"
# APT_O: extra apt-get/apt-cache options for the guest's packages. Empty for
# bookworm (the host's own apt sources and lists); for trixie a private apt
# state in $CACHE_DIR/apt-trixie: its own sources.list (the host's Debian
# mirror, suite trixie), lists, empty dpkg status, no translations.
APT_O=()
guest_apt_private() { # SUITE
  local suite="$1" a="$CACHE_DIR/apt-$1" uri keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -r "$keyring" ] || die "$keyring missing (apt-get install debian-archive-keyring)"
  uri="${ZCTARGET_VM_DEBIAN_MIRROR:-}"
  if [ -z "$uri" ]; then
    # shellcheck disable=SC2016  # apt's own $(...) format fields
    uri="$(apt-get indextargets --format '$(REPO_URI) $(ORIGIN) $(TARGET_OF)' 2>/dev/null \
             | awk '$2 == "Debian" && $3 == "deb" && $1 !~ /security/ { print $1; exit }')"
  fi
  [ -n "$uri" ] || die "no Debian mirror in the host's apt sources: set ZCTARGET_VM_DEBIAN_MIRROR=URI"
  mkdir -p "$a"/{lists/partial,archives/partial,cache,empty}
  [ -e "$a/status" ] || : > "$a/status"
  printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$uri" "$suite" > "$a/sources.list.new"
  cmp -s "$a/sources.list.new" "$a/sources.list" || mv "$a/sources.list.new" "$a/sources.list"
  rm -f "$a/sources.list.new"
  APT_O=(-o "Dir::Etc::SourceList=$a/sources.list" -o "Dir::Etc::SourceParts=$a/empty"
         -o "Dir::Etc::Preferences=$a/empty/none" -o "Dir::Etc::PreferencesParts=$a/empty"
         -o "Dir::State::Lists=$a/lists" -o "Dir::State::status=$a/status"
         -o "Dir::Cache=$a/cache" -o "Dir::Cache::archives=$a/archives"
         -o Acquire::Languages=none -o APT::Sandbox::User=root)
}
apt_update() {
  log "apt-get update${APT_O[*]:+ (guest flavour $FLAVOUR)}"
  apt-get -q "${APT_O[@]}" update >/dev/null 2>&1 || return 0
  # (apt dates the list files by the archive's; this stamp says when we asked)
  [ ${#APT_O[@]} -eq 0 ] || touch "$CACHE_DIR/apt-$FLAVOUR/updated"
}
if [ "$FLAVOUR" != bookworm ]; then
  DEBS="$CACHE_DIR/debs-$FLAVOUR"   # apart: same package names, other versions
  guest_apt_private "$FLAVOUR"
fi
mkdir -p "$DEBS"

# apt's package lists are needed for dependency resolution and downloads.
apt_lists_ready() { apt-cache "${APT_O[@]}" show "$KERNEL_PKG" >/dev/null 2>&1; }
apt_lists_ready || apt_update
apt_lists_ready || die "apt-cache knows no $KERNEL_PKG (apt sources?)"

# deb_file PKG: path of the cached .deb of PKG (empty if none)
deb_file() { compgen -G "$DEBS/${1}_*.deb" | head -n1 || true; }

# fetch_debs PKG...: download the .debs not yet cached
fetch_debs() {
  local missing=() p
  for p in "$@"; do [ -n "$(deb_file "$p")" ] || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "downloading ${#missing[@]} Debian packages into $DEBS"
  # APT::Sandbox::User=root: the _apt user may not be able to write the cache
  local dl=(apt-get -q -o APT::Sandbox::User=root "${APT_O[@]}" download "${missing[@]}")
  ( cd "$DEBS" && "${dl[@]}" >/dev/null ) && return 0
  # a private (trixie) list can be older than the archive: refresh once
  [ ${#APT_O[@]} -gt 0 ] || die "apt-get download failed for: ${missing[*]}"
  apt_update
  ( cd "$DEBS" && "${dl[@]}" >/dev/null ) || die "apt-get download failed for: ${missing[*]}"
}

# dep_closure PKG...: the named packages plus every lib* package they need,
# recursively. Non-library dependencies (debconf, init systems, ...) are left
# out on purpose: only the binaries in GUEST_BINS and their libraries are used.
dep_closure() {
  apt-cache "${APT_O[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances "$@" 2>/dev/null \
    | grep '^[a-z0-9]' | sort -u \
    | awk -v named=" $* " -v skip="$SKIP_PKGS_RE" '
        $0 ~ skip { next }
        index(named, " " $0 " ") || /^lib/ || $0 == "zlib1g" { print }'
}

# ------------------------------------------------------------------ qemu
# A qemu-system-x86_64 on PATH wins. Otherwise Debian's qemu-system-x86 and the
# libraries the host lacks are unpacked into the cache and run from there (on
# machines whose qemu-utils comes from backports, 'apt-get install
# qemu-system-x86' is blocked by a version conflict).
setup_qemu() {
  [ -n "$QEMU_BIN" ] && return 0
  if command -v qemu-system-x86_64 >/dev/null; then QEMU_BIN="$(command -v qemu-system-x86_64)"; return 0; fi
  # qemu runs on the host: the host's own apt lists and the bookworm .deb cache
  local DEBS="$CACHE_DIR/debs" APT_O=()
  local q="$CACHE_DIR/qemu"
  local moddir="$q/root/usr/lib/x86_64-linux-gnu/qemu"
  if [ ! -x "$q/root/usr/bin/qemu-system-x86_64" ] || [ ! -f "$moddir/accel-tcg-x86_64.so" ]; then
    log "no qemu-system-x86_64 on PATH: unpacking Debian's qemu-system-x86 into $q"
    local pkgs=() p
    for p in $(dep_closure qemu-system-x86 qemu-system-data seabios ipxe-qemu); do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || pkgs+=("$p")
    done
    # qemu-system-common holds the TCG accelerator module (accel-tcg-x86_64.so);
    # its own dependencies are display/audio libraries we do not need.
    pkgs+=(qemu-system-common)
    fetch_debs "${pkgs[@]}"
    rm -rf "$q"; mkdir -p "$q/root.tmp"
    for p in "${pkgs[@]}"; do dpkg-deb -x "$(deb_file "$p")" "$q/root.tmp"; done
    mv "$q/root.tmp" "$q/root"
  fi
  local libs="$q/root/usr/lib/x86_64-linux-gnu:$q/root/lib/x86_64-linux-gnu"
  if LD_LIBRARY_PATH="$libs" ldd "$q/root/usr/bin/qemu-system-x86_64" | grep -q 'not found'; then
    die "unpacked qemu lacks libraries: $(LD_LIBRARY_PATH="$libs" ldd "$q/root/usr/bin/qemu-system-x86_64" | grep 'not found' | tr -s ' \n' ' ')"
  fi
  cat > "$q/qemu-system-x86_64" <<EOF
#!/bin/sh
# generated by vm-initiator.sh: run the unpacked qemu with its own libs/firmware
export LD_LIBRARY_PATH="$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export QEMU_MODULE_DIR="$moddir"
exec "$q/root/usr/bin/qemu-system-x86_64" -L "$q/root/usr/share/qemu" \\
  -L "$q/root/usr/share/seabios" -L "$q/root/usr/lib/ipxe/qemu" "\$@"
EOF
  chmod +x "$q/qemu-system-x86_64"
  QEMU_BIN="$q/qemu-system-x86_64"
}

# ------------------------------------------------------------------ image
# linux-image-amd64 is a metapackage: resolve the versioned image package.
resolve_kernel() {
  KERNEL_DEB="$KERNEL_PKG"
  if [[ "$KERNEL_DEB" != linux-image-[0-9]* ]]; then
    KERNEL_DEB="$(apt-cache "${APT_O[@]}" depends "$KERNEL_PKG" | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')"
    [ -n "$KERNEL_DEB" ] || die "cannot resolve $KERNEL_PKG to a kernel image package"
  fi
  KVER="${KERNEL_DEB#linux-image-}"
}
resolve_kernel

# usr-merge the paths of (possibly non-merged) .deb contents
usr_path() { case "$1" in bin/*|sbin/*|lib/*|lib64/*) echo "usr/$1" ;; *) echo "$1" ;; esac; }

# cpio_pack DIR OUT: newc archive of DIR. Not compressed on purpose: under TCG
# the guest kernel needs about a minute to gunzip ~100 MB.
cpio_pack() {
  ( cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 ) > "$2"
  [ -s "$2" ] || die "cpio of $1 failed"
}

# The guest's /init. Part of the image key, so editing it rebuilds the image.
guest_init() {
  cat <<'EOF'
#!/bin/sh
# /init of the zctarget-vm initramfs (generated by tests/vm/vm-initiator.sh)
export PATH=/usr/sbin:/usr/bin HOME=/root TERM=dumb
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /run/lock/iscsi /tmp
mount -t devpts devpts /dev/pts; mount -t tmpfs shm /dev/shm
ln -sf /proc/self/fd /dev/fd
modprobe configfs && mount -t configfs configfs /sys/kernel/config
hostname zctarget-vm
ip link set lo up
modprobe -a virtio_pci virtio_net
n=0; while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
nvme gen-hostnqn > /etc/nvme/hostnqn
cat /proc/sys/kernel/random/uuid > /etc/nvme/hostid
echo "InitiatorName=$(iscsi-iname -p iqn.2005-03.org.open-iscsi)" > /etc/iscsi/initiatorname.iscsi
export STORAGE_VM_HOST=10.0.2.2
[ -f /guest/env ] && { set -a; . /guest/env; set +a; }
echo "[guest] kernel $(uname -r), up $(cut -d' ' -f1 /proc/uptime)s: running guest script"
cd /guest
chmod 755 /guest/script
if head -n1 /guest/script | grep -q '^#!'; then /guest/script; else sh /guest/script; fi
rc=$?
echo "[guest] guest script exit status $rc (up $(cut -d' ' -f1 /proc/uptime)s)"
# the host reads the status from the second serial port (a file on the host)
echo "ZCTARGET_VM_EXIT=$rc" > /dev/ttyS1
sync
poweroff -f
EOF
}

image_key() {
  { printf '%s\n' "$IMAGE_VERSION" "$KERNEL_DEB" "${GUEST_PKGS[*]}" "${GUEST_BINS[*]}" "${GUEST_MODULES[*]}"
    [ "$FLAVOUR" = bookworm ] || echo "flavour=$FLAVOUR"
    guest_init; } | sha256sum | cut -c1-12
}

build_image() {
  local out="$1" t0 pkgs=() p
  t0="$(now)"
  mapfile -t pkgs < <(dep_closure "$KERNEL_DEB" libc6 "${GUEST_PKGS[@]}")
  [ ${#pkgs[@]} -gt 5 ] || die "dependency resolution failed"
  fetch_debs "${pkgs[@]}"

  local work="$CACHE_DIR/build.$$"
  local stage="$work/stage" root="$work/root"
  rm -rf "$work"; mkdir -p "$stage" "$root"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  log "unpacking ${#pkgs[@]} packages"
  for p in "${pkgs[@]}"; do dpkg-deb -x "$(deb_file "$p")" "$stage"; done
  [ -f "$stage/boot/vmlinuz-$KVER" ] || die "vmlinuz-$KVER missing from $KERNEL_DEB"
  # usr-merge the staged tree: bookworm's packages ship /bin, /lib, ...,
  # trixie's mostly /usr/...; afterwards both paths work for either
  for p in bin sbin lib lib64; do
    mkdir -p "$stage/usr/$p"
    if [ -d "$stage/$p" ] && [ ! -L "$stage/$p" ]; then
      cp -a "$stage/$p/." "$stage/usr/$p/" || die "usr-merge of the staged /$p failed"
      rm -rf "${stage:?}/$p"
    fi
    [ -e "$stage/$p" ] || ln -s "usr/$p" "$stage/$p"
  done

  # skeleton (usr-merged)
  mkdir -p "$root"/usr/{bin,sbin,lib/x86_64-linux-gnu,lib64} "$root"/{etc,dev,proc,sys,run,tmp,root,mnt,guest/files,var/lib,var/tmp}
  for p in bin sbin lib lib64; do ln -s "usr/$p" "$root/$p"; done
  ln -s ../run "$root/var/run"; ln -s ../run/lock "$root/var/lock"
  # the kernel opens /dev/console before /init mounts devtmpfs
  mknod -m 600 "$root/dev/console" c 5 1
  mknod -m 666 "$root/dev/null" c 1 3

  # binaries and their libraries, resolved with the *staged* dynamic loader so
  # the guest gets its flavour's libraries whatever the host has
  # (the real file: /lib64/ld-linux-x86-64.so.2 may be an absolute symlink)
  local ldso="$stage/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
  [ -f "$ldso" ] || die "no dynamic loader in the staged libc6"
  # ceph's libraries (fio -> librbd) live in a private dir found via RUNPATH;
  # multipath-tools' own libraries in /lib
  local lpath="$stage/lib/x86_64-linux-gnu:$stage/usr/lib/x86_64-linux-gnu:$stage/usr/lib/x86_64-linux-gnu/ceph:$stage/usr/lib"
  local b l libs=() lddout
  for b in "${GUEST_BINS[@]}"; do
    [ -f "$stage/$b" ] || die "$b is not in the unpacked packages"
    install -D -m 755 "$stage/$b" "$root/$(usr_path "$b")"
    # static binaries (busybox) have no program interpreter (.interp sits in
    # the first bytes of a dynamic executable); ld.so --list crashes on them
    head -c 1024 "$stage/$b" | grep -aq 'ld-linux-x86-64' || continue
    lddout="$("$ldso" --library-path "$lpath" --list "$stage/$b" 2>&1)" \
      || die "resolving the libraries of $b failed: $lddout"
    while read -r l; do
      case "$l" in
        *"not found"*) die "$b needs a library that is missing: $l" ;;
        *"=> /"*) libs+=("$(awk '{ print $3 }' <<<"$l")") ;;
      esac
    done <<<"$lddout"
  done
  for l in $(printf '%s\n' "${libs[@]}" | sort -u); do
    # absolute RUNPATHs (fio -> ceph libs) resolve against the host: map back
    [[ "$l" != "$stage"/* ]] && [ -e "$stage$l" ] && l="$stage$l"
    [[ "$l" == "$stage"/* ]] || die "library $l resolved outside the staged packages"
    p="$(usr_path "${l#"$stage"/}")"
    mkdir -p "$root/$(dirname "$p")"; cp -L "$l" "$root/$p"
  done
  cp -L "$ldso" "$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
  ln -sf ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/usr/lib64/ld-linux-x86-64.so.2"

  # multi-call names, then busybox applets for whatever is still missing
  for p in modprobe insmod rmmod lsmod modinfo depmod; do ln -s kmod "$root/usr/bin/$p"; done
  for p in mkfs.ext4 mkfs.ext3 mkfs.ext2; do ln -s mke2fs "$root/usr/sbin/$p"; done
  for p in fsck.ext4 fsck.ext3 fsck.ext2; do ln -s e2fsck "$root/usr/sbin/$p"; done
  for p in $("$stage/bin/busybox" --list-full); do
    p="$(usr_path "$p")"
    [ -e "$root/$p" ] || [ -L "$root/$p" ] || ln -s /usr/bin/busybox "$root/$p"
  done

  # configuration
  mkdir -p "$root"/etc/iscsi/{nodes,send_targets,ifaces} "$root/etc/nvme"
  cp "$stage/etc/mke2fs.conf" "$root/etc/"
  # open-iscsi defaults, except: never log in automatically
  sed 's/^node\.startup *=.*/node.startup = manual/' "$stage/etc/iscsi/iscsid.conf" > "$root/etc/iscsi/iscsid.conf"
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
  echo 'root:x:0:' > "$root/etc/group"
  printf '127.0.0.1 localhost\n10.0.2.2 host\n' > "$root/etc/hosts"
  : > "$root/etc/fstab"; ln -s /proc/self/mounts "$root/etc/mtab"

  # kernel modules: GUEST_MODULES plus their dependencies per modules.dep
  local kmod_run=(env LD_LIBRARY_PATH="$lpath" "$ldso" --argv0 depmod "$stage/bin/kmod")
  local mdir="lib/modules/$KVER" m f want=()
  "${kmod_run[@]}" -b "$stage" "$KVER" || die "depmod (staged tree) failed"
  for m in "${GUEST_MODULES[@]}"; do
    # match by module name: '-' and '_' are interchangeable
    f="$(awk -v n="${m//-/_}" '{ p = $1; sub(/:$/, "", p); b = p; sub(/.*\//, "", b)
           sub(/\.ko.*$/, "", b); gsub(/-/, "_", b); if (b == n) { print p; exit } }' "$stage/$mdir/modules.dep")"
    if [ -z "$f" ]; then
      grep -q "/${m//[-_]/[-_]}\.ko" "$stage/$mdir/modules.builtin" || warn "module $m: neither a module nor built in"
      continue
    fi
    want+=("$f")
    want+=($(awk -v p="$f:" '$1 == p { for (i = 2; i <= NF; i++) print $i }' "$stage/$mdir/modules.dep"))
  done
  for f in $(printf '%s\n' "${want[@]}" | sort -u); do
    # trixie's modules are xz-compressed: stored plain, so the guest's kmod
    # needs no decompressor (and TCG spends no time on it)
    case "$f" in
      *.ko.xz)  mkdir -p "$root/usr/$mdir/$(dirname "$f")"
                xz -dc "$stage/$mdir/$f" > "$root/usr/$mdir/${f%.xz}" || die "xz -d $f failed" ;;
      *.ko.zst) mkdir -p "$root/usr/$mdir/$(dirname "$f")"
                zstd -qdc "$stage/$mdir/$f" > "$root/usr/$mdir/${f%.zst}" || die "zstd -d $f failed" ;;
      *)        install -D -m 644 "$stage/$mdir/$f" "$root/usr/$mdir/$f" ;;
    esac
  done
  cp "$stage/$mdir"/modules.{builtin,builtin.modinfo,order} "$root/usr/$mdir/"
  # -b ROOT: bookworm's kmod looks in ROOT/lib/modules, trixie's in
  # ROOT/usr/lib/modules; the initramfs' lib -> usr/lib serves both
  "${kmod_run[@]}" -b "$root" "$KVER" || die "depmod (initramfs) failed"

  guest_init > "$root/init"; chmod 755 "$root/init"

  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  cp "$stage/boot/vmlinuz-$KVER" "$out.tmp/vmlinuz"
  cpio_pack "$root" "$out.tmp/initramfs.img"
  printf 'kernel=%s\npackages=%s\nbuilt=%s\n' "$KERNEL_DEB" "${pkgs[*]}" "$(date -u +%FT%TZ)" > "$out.tmp/info"
  rm -rf "$out"; mv "$out.tmp" "$out"
  rm -rf "$work"; trap - EXIT
  # forget images (older versions/variants) unused for 14 days
  find "$CACHE_DIR/images" -mindepth 1 -maxdepth 1 -type d -mtime +14 -exec rm -rf {} + 2>/dev/null || true
  log "built $out ($(du -h "$out/initramfs.img" | cut -f1) initramfs) in $(since "$t0")s"
}

IMG="$CACHE_DIR/images/$KVER-$(image_key)"
image_missing() { [ "$REBUILD" = 1 ] || [ ! -s "$IMG/initramfs.img" ] || [ ! -s "$IMG/vmlinuz" ]; }
# A private (trixie) package list is only read to build an image: before a
# build, refresh it when older than a day (the archive drops superseded
# versions), then resolve again. Runs with a cached image never update it.
if image_missing && [ ${#APT_O[@]} -gt 0 ] && \
   [ -z "$(find "$CACHE_DIR/apt-$FLAVOUR/updated" -mtime -1 2>/dev/null)" ]; then
  apt_update
  resolve_kernel
  IMG="$CACHE_DIR/images/$KVER-$(image_key)"
fi
if image_missing; then
  log "building the guest image for $KVER in $CACHE_DIR"
  build_image "$IMG"
fi
touch "$IMG"       # mark as used (pruning above)
setup_qemu
if [ "$BUILD_ONLY" = 1 ]; then log "ready: image $IMG, qemu $QEMU_BIN"; exit 0; fi

# ------------------------------------------------------------------ accelerator
# KVM only when /dev/kvm opens AND the CPU has VT-x/AMD-V. Some sandboxes offer
# /dev/kvm through kvm_pvm (no vmx/svm): stock Debian kernels hang there.
kvm_ok() {
  [ -c /dev/kvm ] && { exec 9<>/dev/kvm; } 2>/dev/null || return 1
  exec 9>&-
  grep -qwE 'vmx|svm' /proc/cpuinfo
}
case "$ACCEL" in
  kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
  tcg) ACCEL_ARGS=(-accel tcg,thread=multi -cpu max) ;;
  auto) if kvm_ok; then ACCEL_ARGS=(-accel kvm -cpu host)
        else log "KVM not usable: TCG software emulation"; ACCEL_ARGS=(-accel tcg,thread=multi -cpu max); fi ;;
esac

# ------------------------------------------------------------------ run
RUN="$(mktemp -d "${TMPDIR:-/tmp}/zctarget-vm.XXXXXX")"
NS="zcvm-$$-$RANDOM"
NS_MADE=0
TARGET_PID=""

cleanup() {
  local rc=$? p
  set +e
  if [ -n "$TARGET_PID" ] && kill -0 "$TARGET_PID" 2>/dev/null; then
    # setsid made the target its own process group: TERM it, then KILL
    kill -TERM -- "-$TARGET_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$TARGET_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$TARGET_PID" 2>/dev/null
  fi
  if [ "$NS_MADE" = 1 ]; then
    # whatever still runs in our own namespace was started by this run
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -TERM "$p" 2>/dev/null; done
    sleep 0.2
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$NS" 2>/dev/null
  fi
  if [ -n "${KEEP_TARGET_LOG:-}" ] && [ -f "$RUN/target.log" ]; then
    cp "$RUN/target.log" "$KEEP_TARGET_LOG" 2>/dev/null
  fi
  rm -rf "$RUN"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS" || die "cannot create network namespace $NS"
NS_MADE=1
ip netns exec "$NS" ip link set lo up

# per-run initramfs part: script, helpers, env, files. The kernel unpacks
# concatenated cpio archives in order, so this overlays the cached image.
mkdir -p "$RUN/extra/guest/files"
cp "$GUEST_SCRIPT" "$RUN/extra/guest/script"
cp "$HERE/lib.sh" "$RUN/extra/guest/lib.sh"
: > "$RUN/extra/guest/env"
for kv in "${GUEST_ENV[@]}"; do
  [[ "$kv" == [A-Za-z_]*=* ]] || die "--env expects KEY=VALUE, got: $kv"
  printf '%s=%q\n' "${kv%%=*}" "${kv#*=}" >> "$RUN/extra/guest/env"
done
for spec in "${GUEST_FILES[@]}"; do
  src="${spec%%:*}"; dst="/guest/files/$(basename "$src")"
  [[ "$spec" == *:* ]] && dst="${spec#*:}"
  [ -r "$src" ] || die "--file: cannot read $src"
  install -D "$src" "$RUN/extra/$dst"
done
cpio_pack "$RUN/extra" "$RUN/extra.img"
cat "$IMG/initramfs.img" "$RUN/extra.img" > "$RUN/initrd.img"

if [ -n "$TARGET_CMD" ]; then
  log "target (netns $NS): $TARGET_CMD"
  ip netns exec "$NS" setsid bash -c "$TARGET_CMD" > "$RUN/target.log" 2>&1 < /dev/null &
  TARGET_PID=$!
fi
for port in "${WAIT_PORTS[@]}"; do
  deadline=$(( $(date +%s) + WAIT_TIMEOUT ))
  until ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; do
    if [ -n "$TARGET_PID" ] && ! kill -0 "$TARGET_PID" 2>/dev/null; then
      cat "$RUN/target.log" >&2; die "target command exited before port $port opened"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$RUN/target.log" >&2; die "port $port not open after ${WAIT_TIMEOUT}s"; }
    sleep 0.2
  done
  log "port $port is open"
done

NETDEV="user,id=n0,net=10.0.2.0/24,host=10.0.2.2,ipv6=off"
for h in "${HOSTFWDS[@]}"; do NETDEV+=",hostfwd=$h"; done
APPEND="console=ttyS0 panic=-1 rdinit=/init"
[ "$QUIET_KERNEL" = 1 ] && APPEND+=" quiet loglevel=3"
QEMU_ARGS=(-M q35 "${ACCEL_ARGS[@]}" -smp "$SMP" -m "$MEM_MB"
  -nodefaults -no-user-config -display none -vga none -no-reboot
  -kernel "$IMG/vmlinuz" -initrd "$RUN/initrd.img" -append "$APPEND"
  -chardev stdio,id=con,signal=off -serial chardev:con
  -serial "file:$RUN/status"
  -netdev "$NETDEV" -device virtio-net-pci,netdev=n0,romfile=
  -device virtio-rng-pci)

log "booting (${ACCEL_ARGS[1]}, ${MEM_MB} MiB, $SMP cpu, timeout ${VM_TIMEOUT}s)"
T0="$(now)"
set +e
ip netns exec "$NS" timeout -k 5 "$VM_TIMEOUT" "$QEMU_BIN" "${QEMU_ARGS[@]}" < /dev/null
QRC=$?
set -e
log "VM ran $(since "$T0")s (qemu exit $QRC)"

if [ "$QRC" = 124 ] || [ "$QRC" = 137 ]; then
  warn "VM timed out after ${VM_TIMEOUT}s"; RC=124
elif grep -aq 'ZCTARGET_VM_EXIT=' "$RUN/status" 2>/dev/null; then
  RC="$(grep -ao 'ZCTARGET_VM_EXIT=[0-9]*' "$RUN/status" | tail -n1 | cut -d= -f2)"
else
  warn "the guest reported no exit status (kernel panic? qemu error?)"; RC=125
fi
if [ -n "$TARGET_CMD" ] && { [ "$SHOW_TARGET_LOG" = always ] || [ "$RC" != 0 ]; }; then
  log "---- target log (last 80 lines) ----"
  tail -n 80 "$RUN/target.log" >&2 || true
fi
log "guest script exit status: $RC"
exit "$RC"
