#!/usr/bin/env bash
# The container proof for deploy/ (issue #5): builds the image with podman
# without any registry and runs it twice, checking it from the host.
#
#   static   deploy/zctarget.toml passes check-config; the k8s ConfigMap holds
#            it verbatim; deploy/seccomp-io_uring.json is the installed podman
#            default plus io_uring; systemd-analyze verify accepts the unit;
#            compose.yaml and k8s/ parse and keep their promises (127.0.0.1
#            ports, no privileged, caps, probes, seccomp profile).
#   image    debootstrap'd Debian bookworm base (cached in $ZCTARGET_CI_CACHE,
#            default /var/tmp/zctarget-ci), host-built release binary,
#            podman build --pull=never ... BINARY_FROM=prebuilt.
#   run 1    podman's default seccomp profile, as root (--user 0:0), config
#            baked into the image: the daemon must fall back to the epoll
#            engine.
#   run 2    --security-opt seccomp=deploy/seccomp-io_uring.json, as the
#            image's unprivileged user 10001, config mounted from deploy/,
#            memlock for the buffer pool: io_uring with fixed buffers.
#   per run  no capabilities at all, read-only root, ports published on
#            127.0.0.1 at free ports;
#            iscsi-inq and zc-nvme-probe (write + read back 4 KiB) from the
#            host; podman stop (SIGTERM) -> exit code 0, "buffer pool intact"
#            and "shutdown complete" in the log; the probe's block is in the
#            data volume afterwards.
#   cleanup  containers and the image removed; firewall chains and tables
#            netavark created removed (nft/iptables ruleset as before), and
#            net.ipv4.ip_forward restored.
#
# Needs root (rootful podman, apt-get, debootstrap) and the Debian mirror.
# Ends with "N passed, M failed"; exits non-zero on any failure.
#
#   tests/container/podman.sh [--keep]     --keep: leave the image and logs
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib/daemon.sh
. tests/lib/daemon.sh
ROOT=$PWD
START=$SECONDS

KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --keep) KEEP=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME "$0" "$@"
  fi
  echo "tests/container/podman.sh needs root (rootful podman, debootstrap)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

log() { printf '\n== %s\n' "$*"; }
elapsed() { echo "$((SECONDS - START)) s"; }

PASS=0
FAIL=0
pass() { PASS=$((PASS + 1)); echo "ok    $*"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL  $*"; }
# check DESCRIPTION COMMAND...: one counted check.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# abort WHAT: a failure the rest cannot run without.
abort() {
  fail "$1"
  echo "$PASS passed, $FAIL failed"
  exit 1
}

# --- what the test needs ----------------------------------------------------
# runc: podman 4.3 with crun fails on hybrid cgroup hosts; netavark: the
# network backend (not CNI); iptables: netavark's firewall driver; nftables:
# inspecting the ruleset; python3-yaml: manifest checks.
PACKAGES=(podman runc netavark uidmap debootstrap libiscsi-bin iptables nftables python3 python3-yaml)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  timeout 300 apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null \
    || abort "apt-get install ${missing[*]}"
fi

WORK=$(mktemp -d /tmp/zctarget-podman.XXXXXX)
chmod 0755 "$WORK"
CONTAINERS=()
IMAGE="localhost/zctarget-ci:$$"
IMAGES_BEFORE="$WORK/images-before"
FW_SAVED=0

# Container rlimits: podman's defaults (nofile 1048576, ...) fail when the
# host's hard limits are lower and podman cannot raise them.
cap_limit() { # HARD-LIMIT WANTED -> the smaller
  if [ "$1" = unlimited ] || [ "$1" -gt "$2" ]; then echo "$2"; else echo "$1"; fi
}
NOFILE=$(cap_limit "$(ulimit -Hn)" 20000)
NPROC=$(cap_limit "$(ulimit -Hu)" 32768)
export CONTAINERS_CONF="$WORK/containers.conf"
cat > "$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]

[engine]
# podman 4.3 with crun fails on this kind of host (hybrid cgroups).
runtime = "runc"
EOF
PODMAN=(timeout 180 podman)

# --- firewall: remember, and restore what netavark adds -----------------------
IPTS=()
for ipt in iptables ip6tables; do command -v "$ipt" >/dev/null && IPTS+=("$ipt"); done

fw_state() { # the rulesets without counters, for comparing
  if command -v nft >/dev/null; then
    nft -s list ruleset 2>/dev/null || true
  fi
  for ipt in "${IPTS[@]}"; do
    for t in filter nat mangle raw; do
      echo "## $ipt -t $t"
      "$ipt" -w 10 -t "$t" -S 2>/dev/null || true
    done
  done
}

fw_save() {
  fw_state > "$WORK/fw-before"
  for ipt in "${IPTS[@]}"; do
    for t in filter nat mangle raw; do
      "$ipt" -w 10 -t "$t" -S > "$WORK/fw-before.$ipt.$t" 2>/dev/null || true
    done
  done
  nft list tables > "$WORK/nft-tables-before" 2>/dev/null || true
  cat /proc/sys/net/ipv4/ip_forward > "$WORK/ip_forward-before"
  ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' > "$WORK/links-before"
  FW_SAVED=1
}

# Removes the rules and chains podman's network backend (netavark; CNI's
# chains too) added since fw_save, the tables iptables-nft created for them
# when they are empty again, the bridge, and restores ip_forward.
fw_restore() {
  [ "$FW_SAVED" -eq 1 ] || return 0
  for ipt in "${IPTS[@]}"; do
    for t in filter nat mangle raw; do
      "$ipt" -w 10 -t "$t" -S > "$WORK/fw-now" 2>/dev/null || continue
      python3 - "$ipt" "$t" "$WORK/fw-before.$ipt.$t" "$WORK/fw-now" <<'EOF'
import shlex, subprocess, sys
ipt, table, before_file, now_file = sys.argv[1:5]
before = set(open(before_file).read().splitlines())
now = [l for l in open(now_file).read().splitlines() if l not in before]
def podmans(name):
    return name.startswith(("NETAVARK", "CNI-", "PODMAN"))
def run(*args):
    r = subprocess.run([ipt, "-w", "10", "-t", table, *args], capture_output=True, text=True)
    if r.returncode != 0:
        print("  %s -t %s %s: %s" % (ipt, table, " ".join(args), r.stderr.strip()), file=sys.stderr)
# Jumps into podman's chains from other chains (the built-in ones).
for line in now:
    a = shlex.split(line)
    if a[0] == "-A" and not podmans(a[1]) and ("NETAVARK" in line or "netavark" in line or " CNI-" in line):
        run("-D", *a[1:])
chains = [shlex.split(l)[1] for l in now if l.startswith("-N ") and podmans(shlex.split(l)[1])]
for c in chains:
    run("-F", c)
for c in chains:
    run("-X", c)
EOF
      # A table iptables-nft created for podman and now empty goes too.
      if command -v nft >/dev/null; then
        local fam=ip
        [ "$ipt" = ip6tables ] && fam=ip6
        if ! grep -qx "table $fam $t" "$WORK/nft-tables-before" \
          && nft list tables 2>/dev/null | grep -qx "table $fam $t" \
          && ! "$ipt" -w 10 -t "$t" -S 2>/dev/null | grep -qv '^-P '; then
          nft delete table "$fam" "$t" 2>/dev/null || true
        fi
      fi
    done
  done
  for link in podman0 cni-podman0; do
    if ip link show "$link" >/dev/null 2>&1 && ! grep -qx "$link" "$WORK/links-before"; then
      ip link delete "$link" 2>/dev/null || true
    fi
  done
  cat "$WORK/ip_forward-before" > /proc/sys/net/ipv4/ip_forward
}

cleanup() {
  set +e
  for c in "${CONTAINERS[@]}"; do
    timeout 60 podman rm -f -v -t 5 "$c" >/dev/null 2>&1
  done
  CONTAINERS=()
  if [ "$KEEP" -eq 0 ] && [ -f "$IMAGES_BEFORE" ]; then
    timeout 60 podman rmi -f "$IMAGE" >/dev/null 2>&1
    # Build leftovers (stage images) that were not there before.
    for id in $(timeout 60 podman images -a -q --no-trunc 2>/dev/null | sort -u); do
      grep -qx "$id" "$IMAGES_BEFORE" || timeout 60 podman rmi -f "$id" >/dev/null 2>&1
    done
    rm -f "$IMAGES_BEFORE"
  fi
  fw_restore
  FW_SAVED=0
  if [ "$KEEP" -eq 0 ]; then rm -rf "$WORK"; else echo "kept: $WORK, $IMAGE"; fi
}
trap cleanup EXIT

fw_save

# --- host build -------------------------------------------------------------
log "cargo build --release (zctarget, zc-nvme-probe)"
t0=$SECONDS
CARGO_TARGET_DIR="$ROOT/build" cargo build --release --quiet \
  -p zctarget -p zctarget-tests --bin zctarget --bin zc-nvme-probe || abort "cargo build --release"
BIN="$ROOT/build/release/zctarget"
PROBE="$ROOT/build/release/zc-nvme-probe"
echo "built in $((SECONDS - t0)) s"

# --- static checks ----------------------------------------------------------
log "static checks of deploy/"
check "deploy/zctarget.toml passes check-config" "$BIN" check-config deploy/zctarget.toml
if grep -q '^[[:space:]]*metrics_listen' deploy/zctarget.toml; then METRICS=1; else METRICS=0; fi
echo "metrics endpoint in deploy/zctarget.toml: $([ $METRICS = 1 ] && echo yes || echo 'no (not checked)')"
check "seccomp-io_uring.json is podman's default plus io_uring (make-seccomp.py --check)" \
  python3 deploy/make-seccomp.py --check

unit_verify() {
  command -v systemd-analyze >/dev/null || { echo "  no systemd-analyze"; return 1; }
  mkdir -p "$WORK/unit"
  # verify wants ExecStart's binary to exist: point it at the one just built.
  sed "s#/usr/bin/zctarget#$BIN#g" deploy/zctarget.service > "$WORK/unit/zctarget.service"
  local out
  out=$(systemd-analyze verify "$WORK/unit/zctarget.service" 2>&1) || { echo "$out"; return 1; }
  [ -z "$out" ] || { echo "$out"; return 1; } # unknown keys are only warnings
}
check "systemd-analyze verify deploy/zctarget.service (no warnings)" unit_verify

manifests() {
  python3 - <<'EOF'
import sys, yaml
bad = []
def need(cond, msg):
    if not cond:
        bad.append(msg)
toml = open("deploy/zctarget.toml").read()
c = yaml.safe_load(open("deploy/compose.yaml"))
s = c["services"]["zctarget"]
need(all(str(p).startswith("127.0.0.1:") for p in s["ports"]), "compose: a port not on 127.0.0.1")
need({str(p).split(":")[-1] for p in s["ports"]} == {"3260", "4420", "9750"}, "compose: ports")
need("seccomp=./seccomp-io_uring.json" in s["security_opt"], "compose: seccomp profile")
need(s["cap_drop"] == ["ALL"] and not s.get("cap_add"), "compose: capabilities")
need(not s.get("privileged"), "compose: privileged")
need(s["ulimits"]["memlock"] == -1 and "nofile" in s["ulimits"], "compose: ulimits")
need(any("/readyz" in str(x) for x in s["healthcheck"]["test"]), "compose: healthcheck")
docs = {}
for f in ("namespace", "configmap", "daemonset", "kustomization"):
    docs[f] = yaml.safe_load(open("deploy/k8s/%s.yaml" % f))
need(docs["configmap"]["data"]["zctarget.toml"] == toml,
     "k8s: the ConfigMap's zctarget.toml differs from deploy/zctarget.toml")
pod = docs["daemonset"]["spec"]["template"]["spec"]
ctr = pod["containers"][0]
sc = ctr["securityContext"]
need(pod.get("hostNetwork") is True, "k8s: hostNetwork")
need(pod["securityContext"]["seccompProfile"] == {"type": "Localhost",
     "localhostProfile": "zctarget/seccomp-io_uring.json"}, "k8s: seccomp profile")
need(sc.get("privileged") is False and sc.get("allowPrivilegeEscalation") is False, "k8s: privileged")
need(sc["capabilities"] == {"drop": ["ALL"]}, "k8s: capabilities")
need(sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True, "k8s: non-root, read-only")
need(ctr["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 9750}, "k8s: liveness probe")
need(ctr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 9750}, "k8s: readiness probe")
vols = {v["name"]: v for v in pod["volumes"]}
need(vols["config"]["configMap"]["name"] == docs["configmap"]["metadata"]["name"], "k8s: config volume")
need("hostPath" in vols["data"] or "persistentVolumeClaim" in vols["data"], "k8s: data volume")
need(set(docs["kustomization"]["resources"]) == {"namespace.yaml", "configmap.yaml", "daemonset.yaml"},
     "k8s: kustomization resources")
for b in bad:
    print("  " + b)
sys.exit(1 if bad else 0)
EOF
}
check "compose.yaml and k8s/ parse and match deploy/zctarget.toml" manifests

# --- base image: debootstrap'd bookworm, cached -----------------------------
log "base image"
t0=$SECONDS
mirror=${ZCTARGET_CI_MIRROR:-}
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ { print u; exit }' \
    /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}
CACHE=${ZCTARGET_CI_CACHE:-/var/tmp/zctarget-ci}
key=$(printf 'bookworm minbase %s %s v1' "$mirror" "$(dpkg --print-architecture)" | sha256sum | cut -c1-12)
BASE=localhost/zctarget-base:$key
tarball="$CACHE/bookworm-minbase-$key.tar"
mkdir -p "$CACHE"
if "${PODMAN[@]}" image exists "$BASE"; then
  echo "reusing image $BASE"
else
  if [ ! -s "$tarball" ]; then
    echo "debootstrap --variant=minbase bookworm from $mirror (cached as $tarball)"
    rootfs="$CACHE/rootfs-$key.tmp"
    rm -rf "$rootfs"
    if ! timeout 900 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1; then
      tail -20 "$WORK/debootstrap.log"
      rm -rf "$rootfs"
      abort "debootstrap"
    fi
    # A runtime base: no package lists or caches.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" . || abort "tar of the debootstrap'd tree"
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  else
    echo "importing cached $tarball"
  fi
  "${PODMAN[@]}" import --quiet --change 'CMD ["/bin/bash"]' "$tarball" "$BASE" >/dev/null \
    || abort "podman import $tarball"
fi
check "base image $BASE ($((SECONDS - t0)) s)" "${PODMAN[@]}" image exists "$BASE"

# --- the image --------------------------------------------------------------
log "podman build (BINARY_FROM=prebuilt)"
t0=$SECONDS
podman images -a -q --no-trunc | sort -u > "$IMAGES_BEFORE"
if "${PODMAN[@]}" build --pull=never \
  --build-arg BASE_IMAGE="$BASE" --build-arg BINARY_FROM=prebuilt \
  -f deploy/Containerfile -t "$IMAGE" . > "$WORK/build.log" 2>&1; then
  pass "podman build ($((SECONDS - t0)) s)"
else
  tail -30 "$WORK/build.log"
  abort "podman build"
fi
image_sane() {
  local cfg
  cfg=$(timeout 30 podman image inspect -f 'user={{.Config.User}} {{.Config.Entrypoint}} {{.Config.Cmd}} {{.Config.ExposedPorts}} {{.Config.Volumes}} {{.Config.StopSignal}}' "$IMAGE")
  echo "  $cfg"
  for want in user=10001:10001 /usr/bin/zctarget /etc/zctarget/zctarget.toml 3260/tcp 4420/tcp 9750/tcp /var/lib/zctarget SIGTERM; do
    case $cfg in *"$want"*) ;; *) echo "  missing $want"; return 1 ;; esac
  done
}
check "image: user, entrypoint, config, exposed ports, volume, stop signal" image_sane

# --- the runs ---------------------------------------------------------------
IQN=iqn.2026-11.io.zctarget:data
NQN=nqn.2026-11.io.zctarget:data

# wait_log CONTAINER PATTERN SECONDS: until the log matches or the container ends.
wait_log() {
  local i
  for ((i = 0; i < $3 * 4; i++)); do
    timeout 20 podman logs "$1" 2>&1 | grep -q -- "$2" && return 0
    [ "$(timeout 20 podman inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ] || break
    sleep 0.25
  done
  timeout 20 podman logs "$1" 2>&1 | grep -q -- "$2"
}

# http_get PORT PATH: the status code of a GET (metrics endpoint).
http_get() {
  python3 -c '
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=5)
    print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception as e:
    print("error", e)' "$1" "$2"
}

# memlock: io_uring fixed buffers pin the pool. Raise the limit when the host
# allows it; otherwise (a hard limit we cannot raise) grant CAP_IPC_LOCK, which
# exempts the daemon from RLIMIT_MEMLOCK.
# Any --ulimit replaces containers.conf's default_ulimits: repeat them.
LIMITS=(--ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC")
capeff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
if [ "$(ulimit -Hl)" = unlimited ] || (((0x$capeff >> 24) & 1)); then
  MEMLOCK=(--ulimit memlock=-1:-1)
  MEMLOCK_CAPS=0000000000000000
else
  MEMLOCK=(--cap-add IPC_LOCK)
  MEMLOCK_CAPS=0000000000004000 # CAP_IPC_LOCK alone
  echo "note: hard RLIMIT_MEMLOCK is $(ulimit -Hl) KiB and cannot be raised here (no CAP_SYS_RESOURCE); run 2 gets CAP_IPC_LOCK instead"
fi

not_in_log() { ! grep -q -- "$1" "$2"; }

# The daemon's process as seen from the host: "uid=U caps=HEX nnp=N seccomp=M".
proc_view() {
  local pid
  pid=$(timeout 20 podman inspect -f '{{.State.Pid}}' "$1" 2>/dev/null) || return 0
  awk '/^Uid:/ { u = $2 } /^CapEff:/ { c = $2 } /^NoNewPrivs:/ { n = $2 } /^Seccomp:/ { s = $2 }
       END { printf "uid=%s caps=%s nnp=%s seccomp=%s\n", u, c, n, s }' "/proc/$pid/status"
}

# run_case N ENGINE UID CAPEFF DESCRIPTION PODMAN-ARGS...
run_case() {
  local n=$1 engine=$2 uid=$3 caps=$4 what=$5
  shift 5
  local name="zctarget-ci-$$-$n" data="$WORK/data$n" t0=$SECONDS fails_before=$FAIL
  local p_iscsi p_nvme p_metrics
  read -r p_iscsi p_nvme p_metrics < <(zc_free_ports 3)
  local ports=(-p "127.0.0.1:$p_iscsi:3260" -p "127.0.0.1:$p_nvme:4420")
  [ "$METRICS" = 1 ] && ports+=(-p "127.0.0.1:$p_metrics:9750")
  log "run $n: $what (iSCSI 127.0.0.1:$p_iscsi, NVMe/TCP 127.0.0.1:$p_nvme)"
  mkdir -p "$data"
  CONTAINERS+=("$name")
  if ! "${PODMAN[@]}" run -d --name "$name" "${ports[@]}" \
    -v "$data:/var/lib/zctarget" --read-only --cap-drop ALL \
    --security-opt no-new-privileges "${LIMITS[@]}" \
    "$@" "$IMAGE" > "$WORK/run$n.id" 2> "$WORK/run$n.err"; then
    cat "$WORK/run$n.err"
    fail "run $n: podman run"
    return
  fi
  local logf="$WORK/run$n.log"
  if wait_log "$name" "zctarget started" 60; then
    pass "run $n: daemon started ($((SECONDS - t0)) s)"
  else
    podman logs "$name" 2>&1 | tail -20
    fail "run $n: daemon started"
  fi
  podman logs "$name" > "$logf" 2>&1 || true
  grep -m1 "zctarget started" "$logf" | sed 's/^/  /'
  check "run $n: engine=$engine" grep -q "zctarget started.*engine=$engine" "$logf"
  local view
  view=$(proc_view "$name")
  check "run $n: daemon process $view (want uid=$uid caps=$caps nnp=1 seccomp=2)" \
    test "$view" = "uid=$uid caps=$caps nnp=1 seccomp=2"
  if [ "$engine" = epoll ]; then
    check "run $n: the log says io_uring is blocked and it fell back to epoll" \
      grep -q "io_uring unavailable.*using the epoll engine" "$logf"
  else
    check "run $n: io_uring fixed buffers registered (no memlock warning)" \
      not_in_log "cannot register the buffer pool" "$logf"
  fi

  local out="$WORK/run$n.inq"
  if timeout 30 iscsi-inq "iscsi://127.0.0.1:$p_iscsi/$IQN/0" > "$out" 2>&1 && grep -q "Vendor:ZCTARGET" "$out"; then
    pass "run $n: iscsi-inq iscsi://127.0.0.1:$p_iscsi/$IQN/0 ($(grep -m1 '^Product:' "$out" | sed 's/ *$//'))"
  else
    sed 's/^/  /' "$out"
    fail "run $n: iscsi-inq iscsi://127.0.0.1:$p_iscsi/$IQN/0"
  fi

  out="$WORK/run$n.probe"
  if timeout 60 "$PROBE" --addr "127.0.0.1:$p_nvme" --nqn "$NQN" \
    --hostnqn "nqn.2026-11.io.zctarget:podman-test" > "$out" 2>&1; then
    sed 's/^/  /' "$out"
    pass "run $n: zc-nvme-probe 127.0.0.1:$p_nvme (discovery, identify, 4 KiB write + read back)"
  else
    sed 's/^/  /' "$out"
    fail "run $n: zc-nvme-probe 127.0.0.1:$p_nvme"
  fi
  local token
  token=$(sed -n 's/.*token \(zc-nvme-probe:[0-9a-f:]*\).*/\1/p' "$out")

  if [ "$METRICS" = 1 ]; then
    check "run $n: GET /healthz -> 200" test "$(http_get "$p_metrics" /healthz)" = 200
    check "run $n: GET /readyz -> 200" test "$(http_get "$p_metrics" /readyz)" = 200
    check "run $n: GET /metrics -> 200" test "$(http_get "$p_metrics" /metrics)" = 200
  fi

  # SIGTERM (the image's STOPSIGNAL); SIGKILL only after 30 s.
  local t1=$SECONDS
  timeout 90 podman stop -t 30 "$name" > /dev/null 2>&1 || true
  local code
  code=$(timeout 20 podman inspect -f '{{.State.ExitCode}}' "$name" 2>/dev/null || echo "?")
  check "run $n: podman stop (SIGTERM) -> exit code 0 (got $code, $((SECONDS - t1)) s)" test "$code" = 0
  podman logs "$name" > "$logf" 2>&1 || true
  check "run $n: log shows \"buffer pool intact\"" zc_pool_intact "$logf"
  check "run $n: log shows \"shutdown complete\"" grep -q "shutdown complete" "$logf"
  if [ "$FAIL" -gt "$fails_before" ]; then
    echo "  --- container log (last 15 lines)"
    tail -15 "$logf" | sed 's/^/  /'
  fi
  # The probe wrote its token at byte offset 1 MiB: flushed to the volume.
  local got=""
  [ -f "$data/data.img" ] && got=$(dd if="$data/data.img" bs=4096 skip=256 count=1 status=none | head -c "${#token}")
  check "run $n: the probe's block is in the data volume after shutdown" \
    test -n "$token" -a "$got" = "$token"
  timeout 60 podman rm -f -v "$name" > /dev/null 2>&1 || true
  echo "run $n took $((SECONDS - t0)) s"
}

run_case 1 epoll 0 0000000000000000 \
  "podman's default seccomp profile, root without capabilities, config baked in" \
  --user 0:0

# The image's user (10001) owns the data folder; the config comes from deploy/.
mkdir -p "$WORK/data2"
chown 10001:10001 "$WORK/data2"
chmod 0750 "$WORK/data2"
run_case 2 uring 10001 "$MEMLOCK_CAPS" \
  "seccomp-io_uring.json, the image's user 10001, config mounted from deploy/" \
  --security-opt "seccomp=$ROOT/deploy/seccomp-io_uring.json" "${MEMLOCK[@]}" \
  -v "$ROOT/deploy/zctarget.toml:/etc/zctarget/zctarget.toml:ro"

# --- cleanup ----------------------------------------------------------------
log "cleanup"
cleanup_check() {
  local left
  left=$(podman ps -a --filter "name=zctarget-ci-$$" -q)
  [ -z "$left" ] || { echo "  containers left: $left"; return 1; }
}
for c in "${CONTAINERS[@]}"; do timeout 60 podman rm -f -v "$c" >/dev/null 2>&1 || true; done
check "no test containers left" cleanup_check
echo "podman's network left $(fw_state | grep -c -i 'netavark\|CNI-') firewall lines (nft + iptables views) and" \
  "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward); restoring"
fw_restore
FW_SAVED=0
fw_state > "$WORK/fw-after"
if diff -u "$WORK/fw-before" "$WORK/fw-after" > "$WORK/fw-diff"; then
  pass "firewall ruleset as before the test (nft and iptables)"
else
  sed 's/^/  /' "$WORK/fw-diff" | head -40
  fail "firewall ruleset as before the test"
fi
check "net.ipv4.ip_forward as before ($(cat "$WORK/ip_forward-before"))" \
  test "$(cat /proc/sys/net/ipv4/ip_forward)" = "$(cat "$WORK/ip_forward-before")"

echo
echo "container test took $(elapsed)"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
