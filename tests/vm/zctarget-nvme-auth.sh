#!/usr/bin/env bash
# Issue #14 acceptance with the Linux kernel host: NVMe/TCP in-band
# authentication (DH-HMAC-CHAP) against zctarget, in the trixie guest (kernel
# 6.12; bookworm's 6.1 has no CONFIG_NVME_AUTH). One VM runs
# tests/vm/guest/nvme-auth.sh: connect with the host secret (ext4 round trip),
# bidirectional (the files verify), a wrong host secret, a wrong controller
# secret and no secret refused, then each DH group once and each hash once,
# each against its own subsystem that allows only that group or hash (the
# target picks both from its allowed lists).
#
#   tests/vm/zctarget-nvme-auth.sh [--engine uring|epoll] [--bin PATH] [--quick]
#                                  [--groups "null ffdhe2048 ..."] [--hashes "sha256 ..."]
#                                  [--log-dir DIR]
#     --groups   DH groups to try (default all six; "" skips that part)
#     --hashes   hashes to try (default sha256 sha384 sha512; "" skips that part)
#     --log-dir  keep the config, the VM's console and the target's log there
#
# tests/run.sh runs it with --quick. The config it writes
# (hosts entries as tables with dhchap_key / dhchap_ctrl_key; per-group
# subsystems) is in config() / group_subsys() below; hooks:
#   ZC_AUTH_GROUP_LINE  printf format of the line that restricts a per-group
#                       subsystem to group %s (default: dhchap_dhgroups = ["%s"])
#   ZC_AUTH_HASH_LINE   the same for a per-hash subsystem (dhchap_hashes = ["%s"])
#   ZC_AUTH_SUBSYS_EXTRA  extra lines for every [[nvme_subsystems]] (e.g.
#                       dhchap_hashes = ["sha512"])
#   HOST_KEY / CTRL_KEY  the secrets (default: fresh DHHC-1:01 / DHHC-1:03 keys)
#
# Prints one PASS/FAIL line per scenario and "N passed, N failed" last.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/lib/daemon.sh
. tests/lib/daemon.sh
engine=uring
bin=
size=128
groups="null ffdhe2048 ffdhe3072 ffdhe4096 ffdhe6144 ffdhe8192"
hashes="sha256 sha384 sha512"
logdir=
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --quick) size=32; shift ;;
    --groups) groups=$2; shift 2 ;;
    --hashes) hashes=$2; shift 2 ;;
    --log-dir) logdir=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bin=$(zc_bin "$bin") || exit 1
if [ -n "$logdir" ]; then
  mkdir -p "$logdir" && work=$(cd "$logdir" && pwd) || exit 2
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
nqn=nqn.2026-11.io.zctarget:auth
hostnqn=nqn.2014-08.org.nvmexpress:uuid:0c0ffee0-0000-4000-8000-0000000a0ed1
vm=tests/vm/vm-initiator.sh

# dhchap_key ID: a fresh secret in the representation `nvme gen-dhchap-key`
# prints: DHHC-1:<ID>:base64(secret || CRC-32 of secret, little endian):
# ID 00 = untransformed, 01/02/03 = SHA-256/384/512 transformed (32/48/64 bytes)
dhchap_key() {
  python3 -c '
import base64, os, sys, zlib
i = int(sys.argv[1]); k = os.urandom({0: 32, 1: 32, 2: 48, 3: 64}[i])
print("DHHC-1:%02d:%s:" % (i, base64.b64encode(k + zlib.crc32(k).to_bytes(4, "little")).decode()))' "$1"
}
host_key=${HOST_KEY:-$(dhchap_key 1)} || exit 1
ctrl_key=${CTRL_KEY:-$(dhchap_key 3)} || exit 1

subsys() { # NQN VOLUME [EXTRA LINE]
  cat <<CFG

[[nvme_subsystems]]
nqn = "$1"
namespaces = ["$2"]
hosts = [{ nqn = "$hostnqn", dhchap_key = "$host_key", dhchap_ctrl_key = "$ctrl_key" }]
${3:-}
${ZC_AUTH_SUBSYS_EXTRA:-}
CFG
}
volume() { # NAME SIZE
  printf '\n[[volumes]]\nname = "%s"\npath = "%s"\nsize = "%s"\n' "$1" "$work/$1.img" "$2"
}
config() { # NAME
  {
    printf '[server]\niscsi_listen = []\nnvme_listen = ["127.0.0.1:4420"]\nio_engine = "%s"\n' "$engine"
    volume v0 512MiB
    for g in $groups $hashes; do volume "v-$g" 16MiB; done
    subsys "$nqn" v0
    # shellcheck disable=SC2059  # the formats are the hooks
    for g in $groups; do
      subsys "$nqn-$g" "v-$g" "$(printf "${ZC_AUTH_GROUP_LINE:-dhchap_dhgroups = [\"%s\"]}" "$g")"
    done
    # shellcheck disable=SC2059
    for h in $hashes; do
      subsys "$nqn-$h" "v-$h" "$(printf "${ZC_AUTH_HASH_LINE:-dhchap_hashes = [\"%s\"]}" "$h")"
    done
  } > "$work/$1.toml"
}

scenario() { # NAME, then vm-initiator arguments
  local name=$1; shift
  zc_scenario "$name" "$work/$(printf '%s' "$name" | tr -c 'A-Za-z0-9' '_').log" \
    timeout 900 "$vm" --flavour trixie --timeout 600 "$@"
}

"$vm" --flavour trixie --build-only > "$work/build.log" 2>&1 || { cat "$work/build.log"; echo "0 passed, 1 failed"; exit 1; }
config auth
group_nqns="" hash_nqns=""
for g in $groups; do group_nqns+="$g=$nqn-$g "; done
for h in $hashes; do hash_nqns+="$h=$nqn-$h "; done
scenario "DH-HMAC-CHAP: host secret (ext4 ${size} MiB), bidirectional, wrong host/controller secret and no secret refused, DH groups [${groups}], hashes [${hashes}] ($engine)" \
  --guest-script tests/vm/guest/nvme-auth.sh \
  --target-cmd "$bin serve --config $work/auth.toml" --wait-port 4420 \
  --env NQN=$nqn --env PORT=4420 --env HOSTNQN=$hostnqn --env SIZE_MB=$size \
  --env HOST_KEY="$host_key" --env CTRL_KEY="$ctrl_key" \
  --env DHGROUPS="$groups" --env DHGROUP_NQNS="$group_nqns" \
  --env HASHES="$hashes" --env HASH_NQNS="$hash_nqns" --show-target-log

zc_summary
