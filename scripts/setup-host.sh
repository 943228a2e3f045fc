#!/usr/bin/env bash
# Prepares a Debian/Ubuntu host to run the Hydra harness under docker, podman and rootless podman.
# Idempotent; run as root. It installs the engines and compose tools, starts dockerd and the Podman
# API service when nothing else runs them, creates the rootless user, bootstraps the offline base
# image, and applies a host fix only when a probe container fails without it. It says what it did.
#
#   scripts/setup-host.sh               set the host up
#   scripts/setup-host.sh --undo-fixes  undo the host changes setup owns (containers.conf keys it
#                                       writes, /dev/net/tun mode, the daemons it started, by the PID
#                                       it recorded, the Docker Compose v2 plugin, check-jsonschema
#                                       and the kubernetes-validate venv it installed), so
#                                       the next setup must detect, install and repair them
#                                       again: CI runs this first on every run.
#
# Setup needs the harness itself (to bootstrap the base image and name host fixes). By default it
# builds it in release, as `make validate` runs it; HYDRA_SETUP_BUILD=tests (what `make test` sets)
# builds the workspace's test binaries instead and uses their debug harness, so the test run
# that follows compiles nothing twice.
set -euo pipefail

ROOTLESS_USER="${HYDRA_ROOTLESS_USER:-hydra}"
PODMAN_COMPOSE_VERSION="${HYDRA_PODMAN_COMPOSE_VERSION:-1.6.0}"
CHECK_JSONSCHEMA_VERSION=0.39.0
KUBE_VALIDATE_VERSION=1.37.0   # kubernetes-validate: bundles the Kubernetes schemas, works offline
KUBE_VALIDATE_VENV=/opt/hydra/kube-validate-venv
VENV=/opt/hydra/podman-compose
# Docker Compose v2: Debian trixie's docker-compose package is one Go binary that needs only glibc;
# setup extracts it (without the package's dependencies: the host keeps bookworm's libraries) as
# the docker CLI plugin, pinned by version and checksum, from the host's own apt mirror.
COMPOSE_V2_VERSION=2.26.1-4
declare -A COMPOSE_V2_SHA256=(
  [amd64]=47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea
  [arm64]=bbafaa666f3e7fa00ad36f2a8bab889f1c791ca8743d674e7267a3d07203869c
)
COMPOSE_V2_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose
LOG_DIR=/var/log/hydra
BASE_IMAGE=localhost/hydra/bookworm-minbase:latest

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
mkdir -p "$LOG_DIR"
PID_DIR=/run/hydra   # PIDs of the daemons setup starts, so that undo ends exactly those
CONF=/etc/containers/containers.conf
install -d -m 0755 "$PID_DIR"

# start_daemon NAME CMD...: runs CMD in its own session (so undo can end it and its children as one
# process group) and records its PID.
start_daemon() {
  local name=$1; shift
  # From /: the rootless user cannot enter root's working directory (a clone under /root, say).
  ( cd / && exec setsid "$@" >"$LOG_DIR/$name.log" 2>&1 < /dev/null ) &
  echo $! > "$PID_DIR/$name.pid"
}
# stop_daemon NAME PATTERN: ends the process recorded for NAME if its command line still matches.
stop_daemon() {
  local name=$1 pattern=$2 pid
  [ -f "$PID_DIR/$name.pid" ] || return 0
  pid=$(cat "$PID_DIR/$name.pid"); rm -f "$PID_DIR/$name.pid"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"; then
    say "undo: stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
}
unset_conf() { # section key: removes a key setup may have written
  [ -f "$CONF" ] || return 0
  python3 - "$CONF" "$1" "$2" <<'PY'
import re, sys
path, section, key = sys.argv[1:]
out, sec = [], None
for line in open(path).read().splitlines():
    m = re.match(r'\s*\[([^\]]+)\]\s*$', line)
    if m: sec = m.group(1).strip()
    elif sec == section and re.match(rf'\s*{re.escape(key)}\s*=', line): continue
    out.append(line)
# Drop sections left empty.
text, kept = '\n'.join(out), []
for block in re.split(r'\n(?=\s*\[)', text):
    if block.strip() and any(l.strip() and not l.strip().startswith(('[', '#')) for l in block.splitlines()):
        kept.append(block.strip('\n'))
open(path, 'w').write('\n\n'.join(kept) + '\n' if kept else '')
PY
  [ -s "$CONF" ] || rm -f "$CONF"
}

if [ "${1:-}" = --undo-fixes ]; then
  stop_daemon podman-api-rootless "podman system service"
  stop_daemon podman-api "podman system service"
  stop_daemon dockerd dockerd
  unset_conf engine runtime
  unset_conf containers default_ulimits
  if [ -e "$COMPOSE_V2_PLUGIN" ]; then
    say "undo: removed the Docker Compose v2 plugin ($COMPOSE_V2_PLUGIN)"; rm -f "$COMPOSE_V2_PLUGIN"
  fi
  if id "$ROOTLESS_USER" >/dev/null 2>&1; then
    RHOME=$(getent passwd "$ROOTLESS_USER" | cut -d: -f6)
    # As the user: its home is its own. Setup must then write it again and reset that storage.
    (cd / && runuser -u "$ROOTLESS_USER" -- rm -f "$RHOME/.config/containers/storage.conf") && say "undo: removed $ROOTLESS_USER's storage.conf"
  fi
  if [ -x /opt/hydra/junit-venv/bin/check-jsonschema ]; then
    say "undo: removed check-jsonschema from /opt/hydra/junit-venv"
    /opt/hydra/junit-venv/bin/pip uninstall -q -y check-jsonschema >/dev/null 2>&1 || true
  fi
  if [ -d "$KUBE_VALIDATE_VENV" ]; then
    say "undo: removed $KUBE_VALIDATE_VENV (kubernetes-validate)"; rm -rf "$KUBE_VALIDATE_VENV"
  fi
  if [ -e /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 600 ]; then
    say "undo: /dev/net/tun back to 0600"; chmod 0600 /dev/net/tun
  fi
  say "undo: done (containers.conf: $( [ -f "$CONF" ] && tr '\n' ' ' < "$CONF" || echo absent))"
  exit 0
fi

# Everything in the rootless user's home is done *as that user*, with a minimal environment: root
# never writes or chowns through a path the user controls (a planted link would make it write anywhere).
as_user() { (cd / && runuser -u "$ROOTLESS_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$RHOME" \
  USER="$ROOTLESS_USER" LOGNAME="$ROOTLESS_USER" LANG=C.UTF-8 XDG_RUNTIME_DIR="$RTDIR" "$@"); }
rootless_storage() {
  local conf="$RHOME/.config/containers/storage.conf"
  if ! as_user grep -q 'driver *= *"overlay"' "$conf" 2>/dev/null; then
    say "rootless storage: overlay instead of the slow vfs fallback ($conf, written as $ROOTLESS_USER)"
    as_user mkdir -p "$RHOME/.config/containers"
    as_user sh -c 'printf "[storage]\ndriver = \"overlay\"\n" > "$1"' sh "$conf" \
      || die "could not write $conf as $ROOTLESS_USER"
    as_user podman system reset -f >/dev/null 2>&1 || true
  fi
}
if [ "${1:-}" = --rootless-storage-only ]; then   # one step, for the tests of this script
  id "$ROOTLESS_USER" >/dev/null 2>&1 || die "user $ROOTLESS_USER does not exist"
  RHOME=$(getent passwd "$ROOTLESS_USER" | cut -d: -f6); RTDIR=/run/user/$(id -u "$ROOTLESS_USER")
  rootless_storage
  exit 0
fi

# --- packages -------------------------------------------------------------------------------
PKGS=(docker.io podman runc uidmap slirp4netns fuse-overlayfs debootstrap docker-compose
      python3-venv netavark aardvark-dns containernetworking-plugins iptables catatonit wrk curl
      iproute2  # `ip`: teardown removes the network namespaces a cut-off rootful start left
      systemd)  # systemd-analyze verifies the units `harness units` writes; nothing starts systemd
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -q >"$LOG_DIR/apt.log" 2>&1 || die "apt-get update failed (see $LOG_DIR/apt.log)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOG_DIR/apt.log" 2>&1 \
    || die "apt-get install failed (see $LOG_DIR/apt.log)"
else
  say "packages already installed"
fi

# podman-compose from PyPI, pinned, in a venv on the system python (readable by the rootless user).
if ! "$VENV/bin/podman-compose" --version 2>/dev/null | grep -q "podman-compose version $PODMAN_COMPOSE_VERSION"; then
  say "installing podman-compose $PODMAN_COMPOSE_VERSION in $VENV"
  rm -rf "$VENV"; mkdir -p "$(dirname "$VENV")"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "podman-compose==$PODMAN_COMPOSE_VERSION" >"$LOG_DIR/pip.log" 2>&1 || die "pip install failed (see $LOG_DIR/pip.log)"
fi
ln -sf "$VENV/bin/podman-compose" /usr/local/bin/podman-compose
# Docker Compose v2 as the docker CLI plugin (`docker compose`); docker-compose 1.29 stays as the
# legacy tool of the docker-v1 target.
compose_v2_ok() { [ -x "$COMPOSE_V2_PLUGIN" ] && "$COMPOSE_V2_PLUGIN" version 2>/dev/null | grep -q "version $COMPOSE_V2_VERSION\$"; }
if ! compose_v2_ok; then
  arch=$(dpkg --print-architecture)
  sha=${COMPOSE_V2_SHA256[$arch]:-}
  [ -n "$sha" ] || die "no pinned Docker Compose v2 for architecture $arch (pinned: ${!COMPOSE_V2_SHA256[*]})"
  # The mirror the host's apt sources name (as the base image bootstrap reads them); HYDRA_DEBIAN_MIRROR overrides.
  mirror=${HYDRA_DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | sed -nE 's/^deb (\[[^]]*\] )?([^ ]+) .*/\2/p; s/^URIs: *([^ ]+).*/\1/p' | grep -v -- '-security' | head -n1 || true)}
  [ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list(.d); set HYDRA_DEBIAN_MIRROR"
  url="${mirror%/}/pool/main/d/docker-compose/docker-compose_${COMPOSE_V2_VERSION}_${arch}.deb"
  say "installing Docker Compose v2 $COMPOSE_V2_VERSION as the docker CLI plugin (binary of $url)"
  dl=$(mktemp -d); trap 'rm -rf "$dl"' EXIT
  curl -fsS --max-time 300 -o "$dl/dc.deb" "$url" || die "download of $url failed"
  echo "$sha  $dl/dc.deb" | sha256sum -c --quiet - || die "checksum mismatch for $url (expected $sha)"
  dpkg-deb -x "$dl/dc.deb" "$dl/x" || die "could not unpack $url"
  install -D -m 0755 "$dl/x/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE_V2_PLUGIN"
  rm -rf "$dl"; trap - EXIT
  compose_v2_ok || die "$COMPOSE_V2_PLUGIN does not report version $COMPOSE_V2_VERSION"
fi
# junitparser: a real JUnit consumer, used to check the suite's report.
if ! /opt/hydra/junit-venv/bin/python -c 'import junitparser' 2>/dev/null; then
  say "installing junitparser in /opt/hydra/junit-venv (checks the JUnit report)"
  rm -rf /opt/hydra/junit-venv && /usr/bin/python3 -m venv /opt/hydra/junit-venv
  /opt/hydra/junit-venv/bin/pip install -q junitparser >>"$LOG_DIR/pip.log" 2>&1 || die "pip install junitparser failed (see $LOG_DIR/pip.log)"
fi
# check-jsonschema, pinned: checks the CI templates in ci/ against GitHub's and GitLab's schemas.
if [ "$(/opt/hydra/junit-venv/bin/check-jsonschema --version 2>/dev/null)" != "check-jsonschema, version $CHECK_JSONSCHEMA_VERSION" ]; then
  say "installing check-jsonschema $CHECK_JSONSCHEMA_VERSION in /opt/hydra/junit-venv (checks the CI templates)"
  /opt/hydra/junit-venv/bin/pip install -q "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" >>"$LOG_DIR/pip.log" 2>&1 \
    || die "pip install check-jsonschema failed (see $LOG_DIR/pip.log)"
fi
# kubernetes-validate, pinned, in a venv of its own: checks the YAML `harness kube` writes against
# the Kubernetes schemas it bundles (no network needed once installed).
if [ "$("$KUBE_VALIDATE_VENV/bin/kubernetes-validate" --version 2>/dev/null)" != "$KUBE_VALIDATE_VERSION" ]; then
  say "installing kubernetes-validate $KUBE_VALIDATE_VERSION in $KUBE_VALIDATE_VENV (checks the Kubernetes YAML)"
  rm -rf "$KUBE_VALIDATE_VENV" && /usr/bin/python3 -m venv "$KUBE_VALIDATE_VENV"
  "$KUBE_VALIDATE_VENV/bin/pip" install -q "kubernetes-validate==$KUBE_VALIDATE_VERSION" >>"$LOG_DIR/pip.log" 2>&1 \
    || die "pip install kubernetes-validate failed (see $LOG_DIR/pip.log)"
fi

# --- dockerd ----------------------------------------------------------------------------------
if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  say "starting dockerd (no init system runs it here); log in $LOG_DIR/dockerd.log"
  start_daemon dockerd dockerd
  for _ in $(seq 1 60); do docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && break; sleep 1; done
  docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "dockerd did not come up in 60 s (see $LOG_DIR/dockerd.log)"
else
  say "dockerd already running"
fi

# --- rootless user ----------------------------------------------------------------------------
if ! id "$ROOTLESS_USER" >/dev/null 2>&1; then
  say "creating rootless user $ROOTLESS_USER"
  useradd -m -s /bin/bash "$ROOTLESS_USER"
fi
RUID=$(id -u "$ROOTLESS_USER"); RHOME=$(getent passwd "$ROOTLESS_USER" | cut -d: -f6)
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if ! grep -q "^$ROOTLESS_USER:" "$f"; then
    say "adding a subordinate id range for $ROOTLESS_USER to $f"
    echo "$ROOTLESS_USER:100000:65536" >> "$f"
  fi
done
RTDIR=/run/user/$RUID
if [ ! -d "$RTDIR" ] || [ "$(stat -c %u:%a "$RTDIR")" != "$RUID:700" ]; then
  say "creating $RTDIR (0700, owned by $ROOTLESS_USER): no logind creates it here"
  install -d -m 0700 -o "$RUID" -g "$(id -g "$ROOTLESS_USER")" "$RTDIR"
fi
rootless_storage
# A stale rootless network namespace (a Podman process killed while it tore the namespace down:
# its slirp4netns gone, its runtime directory missing or emptied) makes every container on a
# user-defined network fail to start with "failed to mount runtime directory for rootless netns",
# while podman-compose exits 0. Podman makes a new one once the stale namespace is gone. The check
# and the removal run as the user, inside its namespace, under Podman's own lock (the script is the
# one the harness runs before every rootless stack; it reaches the user on stdin, since the user
# may not be able to read this checkout).
if ls "$RTDIR"/netns/rootless-netns-* >/dev/null 2>&1; then
  NETNS_SCRIPT="$(cd "$(dirname "$0")/.." && pwd)/engine/src/runtime/rootless_netns.py"
  removed=$(as_user podman unshare python3 - "$RTDIR" < "$NETNS_SCRIPT") \
    || die "could not check the rootless network namespace in $RTDIR/netns (see the error above)"
  [ -z "$removed" ] || say "fix: $removed (a killed teardown left it)"
fi
# Rootless containers need / to be a shared mount for their mount propagation.
if [ "$(findmnt -no PROPAGATION / 2>/dev/null || echo unknown)" != shared ]; then
  say "making / a shared mount (rootless podman warns otherwise)"
  mount --make-rshared / || true
fi

# --- offline base image (the harness bootstraps it from the host's apt mirror and imports it) --
HERE=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v cargo >/dev/null 2>&1; then die "cargo not found: install a Rust toolchain (rustup) first"; fi
case "${HYDRA_SETUP_BUILD:-release}" in
  release)
    say "building the harness (release) to bootstrap the base image"
    (cd "$HERE" && cargo build -q --release --bin harness) || die "cargo build failed"
    HARNESS=$HERE/target/release/harness ;;
  tests)
    say "building the test binaries (their debug harness bootstraps the base image)"
    (cd "$HERE" && cargo test -q --workspace --no-run) || die "cargo test --no-run failed"
    HARNESS=$HERE/target/debug/harness ;;
  *) die "HYDRA_SETUP_BUILD='${HYDRA_SETUP_BUILD}': expected release or tests" ;;
esac
"$HARNESS" images --base-only || die "could not create the base image $BASE_IMAGE"

# --- host fixes, each only when a probe fails without it --------------------------------------
set_conf() { # section key value
  python3 - "$CONF" "$1" "$2" "$3" <<'PY'
import re, sys
path, section, key, value = sys.argv[1:]
try: text = open(path).read()
except FileNotFoundError: text = ""
lines = text.splitlines(); out = []; in_sec = False; done = False; seen = False
for line in lines:
    m = re.match(r'\s*\[([^\]]+)\]\s*$', line)
    if m:
        if in_sec and not done: out.append(f'{key} = {value}'); done = True
        in_sec = m.group(1).strip() == section; seen |= in_sec
        out.append(line); continue
    if in_sec and re.match(rf'\s*{re.escape(key)}\s*=', line):
        if not done: out.append(f'{key} = {value}'); done = True
        continue
    out.append(line)
if in_sec and not done: out.append(f'{key} = {value}'); done = True
if not seen: out += ['', f'[{section}]', f'{key} = {value}']
open(path, 'w').write('\n'.join(out).strip('\n') + '\n')
PY
}
probe() { "$@" run --rm --network none --label io.hydra.managed=true --label io.hydra.run=setup-probe "$BASE_IMAGE" true 2>&1; }
mkdir -p /etc/containers
# The harness recognises the cause from crun's or runc's wording (`harness host-fix`, unit-tested on both).
host_fix() { "$HARNESS" host-fix <<<"$1" || true; }
conf_has() { grep -q "^$1 *= *$2" "$CONF" 2>/dev/null; }
for attempt in 1 2 3 4; do
  if err=$(probe podman); then say "rootful podman: probe container runs"; break; fi
  fix=$(host_fix "$err")
  if [ "$fix" = use-runc ] && ! conf_has runtime '"runc"'; then
    say "fix: crun fails on this cgroup setup ($(grep -m1 -o 'cgroups in hybrid mode[^"]*' <<<"$err")); using runc"
    set_conf engine runtime '"runc"'
  elif [ "$fix" = no-default-ulimits ] && ! conf_has default_ulimits '\[\]'; then
    say "fix: default ulimits are refused here ($(grep -m1 -oi 'setrlimit[^:]*: [^:]*\|error setting rlimit[^:]*: [^:"]*' <<<"$err")); default_ulimits = []"
    set_conf containers default_ulimits '[]'
  else
    die "rootful podman cannot run a container (cause: ${fix:-unknown}): $err"
  fi
done
for attempt in 1 2 3; do
  if err=$(probe as_user podman) && err2=$(as_user podman run --rm --label io.hydra.managed=true --label io.hydra.run=setup-probe "$BASE_IMAGE" true 2>&1); then
    say "rootless podman: probe containers run (with and without a network)"; break
  fi
  err="$err ${err2:-}"
  if [ "$(host_fix "$err")" = tun-readable ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
    say "fix: slirp4netns cannot open /dev/net/tun as $ROOTLESS_USER; chmod 0666 /dev/net/tun"
    chmod 0666 /dev/net/tun
  else
    die "rootless podman cannot run a container: $err"
  fi
done
if err=$(probe docker); then say "docker: probe container runs"; else die "docker cannot run a container: $err"; fi

# --- Podman API services (Docker-compatible sockets for API clients) --------------------------
api_up() { curl -s --max-time 3 --unix-socket "$1" http://d/_ping >/dev/null 2>&1; }
wait_api() { for _ in $(seq 1 40); do api_up "$1" && return 0; sleep 0.5; done; die "the Podman API service did not answer on $1 in 20 s (see $LOG_DIR)"; }
if ! api_up /run/podman/podman.sock; then
  say "starting the rootful Podman API service on /run/podman/podman.sock"
  mkdir -p /run/podman; rm -f /run/podman/podman.sock
  start_daemon podman-api podman system service --time=0 unix:///run/podman/podman.sock
  wait_api /run/podman/podman.sock
fi
if ! api_up "$RTDIR/podman/podman.sock"; then
  say "starting the rootless Podman API service on $RTDIR/podman/podman.sock"
  as_user mkdir -p "$RTDIR/podman"; as_user rm -f "$RTDIR/podman/podman.sock"
  start_daemon podman-api-rootless runuser -u "$ROOTLESS_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$RHOME" \
    USER="$ROOTLESS_USER" LOGNAME="$ROOTLESS_USER" LANG=C.UTF-8 XDG_RUNTIME_DIR="$RTDIR" \
    podman system service --time=0 "unix://$RTDIR/podman/podman.sock"
  wait_api "$RTDIR/podman/podman.sock"
fi
say "done: docker $(docker version --format '{{.Server.Version}}'), podman $(podman version --format '{{.Client.Version}}'), $(docker compose version 2>/dev/null), $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /'), $("$VENV/bin/podman-compose" --version | head -n1)"
