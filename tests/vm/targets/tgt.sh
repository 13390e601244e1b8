#!/usr/bin/env bash
# targets/tgt.sh - reference iSCSI target for the VM tests: Debian's tgtd on
# 127.0.0.1:PORT with one file-backed LUN, in the foreground until killed.
# Meant to run as vm-initiator.sh --target-cmd (inside the private netns):
#
#   vm-initiator.sh --target-cmd "tests/vm/targets/tgt.sh --port 3260" --wait-port 3260 ...
#
#   --port P               listen port (default 3260)
#   --iqn IQN              target name (default iqn.2024-01.test.zctarget:tgt1)
#   --size-mb N            size of the LUN (default 256)
#   --backing FILE         use FILE as the LUN (created with --size-mb if missing,
#                          kept afterwards: lets a restarted target keep its data)
#   --chap USER:SECRET     require CHAP from the initiator
#   --mutual USER:SECRET   target's credentials for mutual CHAP
#   --install              only install tgt (apt-get) and exit; run it on the
#                          host beforehand (the test netns has no network)
set -euo pipefail
PORT=3260 IQN=iqn.2024-01.test.zctarget:tgt1 SIZE_MB=256 BACKING="" CHAP="" MUTUAL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --iqn) IQN="$2"; shift 2 ;;
    --size-mb) SIZE_MB="$2"; shift 2 ;;
    --backing) BACKING="$2"; shift 2 ;;
    --chap) CHAP="$2"; shift 2 ;;
    --mutual) MUTUAL="$2"; shift 2 ;;
    --install) # on the host, beforehand: the test netns has no network
      command -v tgtd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q tgt >/dev/null
      exit $? ;;
    *) sed -n '2,19p' "$0" >&2; exit 2 ;;
  esac
done
command -v tgtd >/dev/null || { echo "tgt.sh: tgtd missing: run '$0 --install' first" >&2; exit 2; }

# tgtadm reaches tgtd through a unix socket named after the "control port"
# (/var/run/tgtd/socket.N). That is a file system path, shared with every
# other tgtd on the machine (the netns does not isolate it): pick our own N.
CTL=$(( 1000 + $$ % 30000 ))   # tgtd accepts small values only
WORK="$(mktemp -d "${TMPDIR:-/tmp}/zc-tgt.XXXXXX")"
if [ -z "$BACKING" ]; then BACKING="$WORK/lun1.img"; fi
[ -e "$BACKING" ] || truncate -s "${SIZE_MB}M" "$BACKING"

tgtd -f -C "$CTL" --iscsi "portal=127.0.0.1:$PORT" &
TGTD=$!
stop() {
  # tgtd ignores SIGTERM while it has targets: ask it to exit via tgtadm
  tgtadm -C "$CTL" --op delete --mode system --force >/dev/null 2>&1 || true
  for _ in $(seq 30); do kill -0 "$TGTD" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$TGTD" 2>/dev/null || true
  wait "$TGTD" 2>/dev/null || true
  rm -f "/var/run/tgtd/socket.$CTL" "/var/run/tgtd/socket.$CTL.lock"
  rm -rf "$WORK"
}
trap stop EXIT
trap 'exit 0' TERM INT

adm() { tgtadm -C "$CTL" --lld iscsi "$@"; }
for _ in $(seq 100); do adm --op show --mode sys >/dev/null 2>&1 && break; sleep 0.1; done
adm --op new --mode target --tid 1 -T "$IQN"
adm --op new --mode logicalunit --tid 1 --lun 1 -b "$BACKING"
adm --op bind --mode target --tid 1 -I ALL
if [ -n "$CHAP" ]; then
  adm --op new --mode account --user "${CHAP%%:*}" --password "${CHAP#*:}"
  adm --op bind --mode account --tid 1 --user "${CHAP%%:*}"
fi
if [ -n "$MUTUAL" ]; then
  adm --op new --mode account --user "${MUTUAL%%:*}" --password "${MUTUAL#*:}"
  adm --op bind --mode account --tid 1 --user "${MUTUAL%%:*}" --outgoing
fi
echo "tgt.sh: $IQN on 127.0.0.1:$PORT, LUN 1 = $BACKING, chap=${CHAP:+yes} mutual=${MUTUAL:+yes}, tgtadm -C $CTL"
wait "$TGTD"
