#!/bin/bash
# guest/nvme-fs.sh - NVMe/TCP acceptance test, run inside the VM by vm-initiator.sh.
# nvme discover, nvme connect (-i 2, digests optional), nvme list / id-ctrl /
# id-ns sanity, mkfs.ext4 + checksummed files + remount + verify + fsck,
# blkdiscard, optional fio randwrite+verify, nvme disconnect.
#
# Env (all optional):
#   PORT=4420  NQN=nqn.2024-01.test.zctarget:nvme1
#   ADDR         address dialled (default 10.0.2.2 = the host's 127.0.0.1 in the
#                netns; 127.0.0.1 with NVME_LOCAL_TARGET=1)
#   NVME_LOCAL_TARGET=1   serve NQN from the guest kernel's own nvmet-tcp on
#                127.0.0.1:PORT (proves the test itself; backing file NS_MB MiB)
#   NS_MB=256    size of that local namespace
#   DIGESTS=1    connect with header and data digests (-g -G)
#   HOSTNQN=...  initiator host NQN (default: generated at boot)
#   EXPECT_CONNECT_FAIL=1  negative test: this host NQN is not allowed, the
#                connect must fail (local mode: nvmet allows only another host)
#   NVMET_LISTEN=127.0.0.1  local target's listen address; 0.0.0.0 together with
#                ADDR=10.0.2.2 and vm-initiator --hostfwd tcp:127.0.0.1:PORT-:PORT
#                loops the connection through the host netns (like a host target)
#   SIZE_MB=128  FILE_MB=4   data written through the file system
#   DISCARD=0    skip blkdiscard
#   RUN_FIO=1    fio randwrite + crc32c verify, qd 32, FIO_SIZE=64M, libaio, direct
# shellcheck source=tests/vm/lib.sh
. /guest/lib.sh
PORT="${PORT:-4420}"
NQN="${NQN:-nqn.2024-01.test.zctarget:nvme1}"
LOCAL="${NVME_LOCAL_TARGET:-0}"
if [ "$LOCAL" = 1 ]; then ADDR="${ADDR:-127.0.0.1}"; else ADDR="${ADDR:-$HOST_IP}"; fi
SIZE_MB="${SIZE_MB:-128}"; FILE_MB="${FILE_MB:-4}"
FIO_SIZE="${FIO_SIZE:-64M}"
[ -n "${HOSTNQN:-}" ] && echo "$HOSTNQN" > /etc/nvme/hostnqn
echo "== host NQN $(cat /etc/nvme/hostnqn)"

must "modprobe nvme-tcp" modprobe -a nvme-tcp nvme-fabrics
if [ "$LOCAL" = 1 ]; then
  allowed=""
  [ "${EXPECT_CONNECT_FAIL:-0}" = 1 ] && allowed="nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-00000000beef"
  must "create ${NS_MB:-256} MiB backing file" truncate -s "${NS_MB:-256}M" /tmp/nvmet-ns1.img
  must "local nvmet-tcp target $NQN on ${NVMET_LISTEN:-127.0.0.1}:$PORT${allowed:+ (only $allowed allowed)}" \
    nvmet_setup_local "$NQN" /tmp/nvmet-ns1.img "${NVMET_LISTEN:-127.0.0.1}" "$PORT" "$allowed"
fi

CONNECT=(nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN" -i 2)
[ "${DIGESTS:-0}" = 1 ] && CONNECT+=(-g -G)

echo "== nvme discover -t tcp -a $ADDR -s $PORT"
if [ "${EXPECT_CONNECT_FAIL:-0}" = 1 ]; then
  # the discovery log may legitimately hide subsystems this host may not use
  nvme discover -t tcp -a "$ADDR" -s "$PORT" || echo "INFO: discovery failed for this host"
  echo "== ${CONNECT[*]} (must fail)"
  if "${CONNECT[@]}"; then
    step_fail "connect refused for a host NQN that is not allowed" "connect succeeded"
    nvme disconnect -n "$NQN"
  else
    step_pass "connect refused for a host NQN that is not allowed"
    sleep 1
    step "no namespace device for $NQN" bash -c ". /guest/lib.sh; ! nvme_dev_for '$NQN'"
  fi
  finish
fi
must "nvme discover" bash -c "nvme discover -t tcp -a '$ADDR' -s '$PORT' | tee /tmp/disc.out"
step "discovery log lists $NQN" grep -q "subnqn: *$NQN\$" /tmp/disc.out

echo "== ${CONNECT[*]}"
must "nvme connect" "${CONNECT[@]}"
dev="$(nvme_wait_dev "$NQN" 15)"
must "namespace block device" test -b "$dev"
ctrl=""
for c in /sys/class/nvme/nvme*; do
  [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$NQN" ] && { ctrl="/dev/${c##*/}"; break; }
done
must "controller device" test -c "$ctrl"
echo "== $ctrl / $dev: $(( $(cat /sys/block/"${dev#/dev/}"/size) / 2048 )) MiB, transport $(cat /sys/class/nvme/"${ctrl#/dev/}"/transport) $(cat /sys/class/nvme/"${ctrl#/dev/}"/address)"

step "nvme list shows $dev" bash -c "nvme list | tee /dev/stderr | grep -q '^$dev '"
# 2 I/O queues requested (-i 2) + the admin queue
step "queue_count is 3 (-i 2 + admin)" test "$(cat /sys/class/nvme/"${ctrl#/dev/}"/queue_count)" = 3
nvme id-ctrl "$ctrl" > /tmp/id-ctrl.out
step "nvme id-ctrl" test -s /tmp/id-ctrl.out
grep -E '^(vid|sn|mn|fr|mdts|cntlid|ver|nn|oncs|subnqn|ioccsz|iorcsz|sgls) ' /tmp/id-ctrl.out
step "id-ctrl subnqn is $NQN" grep -q "^subnqn *: *$NQN\$" /tmp/id-ctrl.out
# shellcheck disable=SC2016  # $3 is awk's
step "id-ctrl nn >= 1" awk '/^nn /{ exit !($3 + 0 >= 1) }' /tmp/id-ctrl.out
nsid="$(nvme get-ns-id "$dev" 2>/dev/null | awk -F: '{ print $NF + 0 }')"
nvme id-ns "$dev" > /tmp/id-ns.out
step "nvme id-ns" test -s /tmp/id-ns.out
grep -E '^(nsze|ncap|nuse|nsfeat|nlbaf|flbas|dlfeat)|in use' /tmp/id-ns.out
# namespace size (nsze blocks of 2^lbads bytes) must equal the block device size
nsze="$(awk '/^nsze/ { print $3 }' /tmp/id-ns.out)"
lbads="$(sed -n 's/.*lbads:\([0-9]*\).*(in use).*/\1/p' /tmp/id-ns.out)"
bytes=$(( nsze << lbads ))   # bash arithmetic reads nvme-cli's 0x... values
step "id-ns nsze x block size = device size (nsid ${nsid:-?}, $bytes bytes)" \
  test "$bytes" = "$(( $(cat /sys/block/"${dev#/dev/}"/size) * 512 ))"

fs_roundtrip "$dev" "$SIZE_MB" "$FILE_MB"

if [ "${DISCARD:-1}" = 1 ]; then
  step "blkdiscard $dev" blkdiscard -f "$dev"   # -f: it still holds an ext4 signature
fi
if [ "${RUN_FIO:-0}" = 1 ]; then
  echo "== fio randwrite + verify=crc32c, qd 32, $FIO_SIZE, libaio, direct"
  step "fio randwrite+verify" fio --name=zc-verify --filename="$dev" --rw=randwrite --bs=4k \
    --iodepth=32 --ioengine=libaio --direct=1 --size="$FIO_SIZE" \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --eta=never --output=/tmp/fio.out
  grep -E 'IOPS|err=|verify|READ:|WRITE:' /tmp/fio.out
fi
step "nvme disconnect" nvme disconnect -n "$NQN"
step "namespace device gone" wait_until 10 bash -c ". /guest/lib.sh; ! nvme_dev_for '$NQN'"
finish
