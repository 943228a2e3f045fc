#!/usr/bin/env bash
# Prepares a Debian/Ubuntu host to run the Hydra harness under docker, podman and rootless podman.
# Idempotent; run as root. It installs the engines and compose tools, starts dockerd and the Podman
# API service when nothing else runs them, creates the rootless user, bootstraps the offline base
# image, and applies a host fix only when a probe container fails without it. It says what it did.
set -euo pipefail

ROOTLESS_USER="${HYDRA_ROOTLESS_USER:-hydra}"
PODMAN_COMPOSE_VERSION="${HYDRA_PODMAN_COMPOSE_VERSION:-1.6.0}"
VENV=/opt/hydra/podman-compose
LOG_DIR=/var/log/hydra
BASE_IMAGE=localhost/hydra/bookworm-minbase:latest

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
mkdir -p "$LOG_DIR"

# --- packages -------------------------------------------------------------------------------
PKGS=(docker.io podman runc uidmap slirp4netns fuse-overlayfs debootstrap docker-compose
      python3-venv netavark aardvark-dns containernetworking-plugins iptables catatonit wrk curl)
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
# junitparser: a real JUnit consumer, used to check the suite's report.
if ! /opt/hydra/junit-venv/bin/python -c 'import junitparser' 2>/dev/null; then
  say "installing junitparser in /opt/hydra/junit-venv (checks the JUnit report)"
  rm -rf /opt/hydra/junit-venv && /usr/bin/python3 -m venv /opt/hydra/junit-venv
  /opt/hydra/junit-venv/bin/pip install -q junitparser >>"$LOG_DIR/pip.log" 2>&1 || die "pip install junitparser failed (see $LOG_DIR/pip.log)"
fi

# --- dockerd ----------------------------------------------------------------------------------
if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  say "starting dockerd (no init system runs it here); log in $LOG_DIR/dockerd.log"
  nohup dockerd >"$LOG_DIR/dockerd.log" 2>&1 &
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
STORAGE_CONF="$RHOME/.config/containers/storage.conf"
if ! grep -q 'driver *= *"overlay"' "$STORAGE_CONF" 2>/dev/null; then
  say "rootless storage: overlay instead of the slow vfs fallback ($STORAGE_CONF)"
  install -d -o "$RUID" -g "$(id -g "$ROOTLESS_USER")" "$RHOME/.config" "$RHOME/.config/containers"
  printf '[storage]\ndriver = "overlay"\n' > "$STORAGE_CONF"
  chown "$RUID" "$STORAGE_CONF"
  (cd "$RHOME" && runuser -u "$ROOTLESS_USER" -- env XDG_RUNTIME_DIR="$RTDIR" HOME="$RHOME" podman system reset -f >/dev/null 2>&1) || true
fi
# Rootless containers need / to be a shared mount for their mount propagation.
if [ "$(findmnt -no PROPAGATION / 2>/dev/null || echo unknown)" != shared ]; then
  say "making / a shared mount (rootless podman warns otherwise)"
  mount --make-rshared / || true
fi

# --- offline base image (the harness bootstraps it from the host's apt mirror and imports it) --
HERE=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v cargo >/dev/null 2>&1; then die "cargo not found: install a Rust toolchain (rustup) first"; fi
say "building the harness (release) to bootstrap the base image"
(cd "$HERE" && cargo build -q --release --bin harness) || die "cargo build failed"
"$HERE/target/release/harness" images --base-only || die "could not create the base image $BASE_IMAGE"
as_user() { (cd "$RHOME" && runuser -u "$ROOTLESS_USER" -- env XDG_RUNTIME_DIR="$RTDIR" HOME="$RHOME" "$@"); }

# --- host fixes, each only when a probe fails without it --------------------------------------
CONF=/etc/containers/containers.conf
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
for attempt in 1 2 3 4; do
  if err=$(probe podman); then say "rootful podman: probe container runs"; break; fi
  if grep -q "cgroups in hybrid mode" <<<"$err" && ! grep -q '^runtime *= *"runc"' "$CONF" 2>/dev/null; then
    say "fix: crun fails on this cgroup setup ($(grep -m1 -o 'cgroups in hybrid mode[^"]*' <<<"$err")); using runc"
    set_conf engine runtime '"runc"'
  elif grep -q "RLIMIT_NOFILE\|setrlimit" <<<"$err" && ! grep -q '^default_ulimits' "$CONF" 2>/dev/null; then
    say "fix: default ulimits are refused here ($(grep -m1 -o 'setrlimit[^:]*: [^:]*' <<<"$err")); default_ulimits = []"
    set_conf containers default_ulimits '[]'
  else
    die "rootful podman cannot run a container: $err"
  fi
done
for attempt in 1 2 3; do
  if err=$(probe as_user podman) && err2=$(as_user podman run --rm --label io.hydra.managed=true --label io.hydra.run=setup-probe "$BASE_IMAGE" true 2>&1); then
    say "rootless podman: probe containers run (with and without a network)"; break
  fi
  err="$err ${err2:-}"
  if grep -q "/dev/net/tun" <<<"$err" && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
    say "fix: slirp4netns cannot open /dev/net/tun as $ROOTLESS_USER; chmod 0666 /dev/net/tun"
    chmod 0666 /dev/net/tun
  else
    die "rootless podman cannot run a container: $err"
  fi
done
if err=$(probe docker); then say "docker: probe container runs"; else die "docker cannot run a container: $err"; fi

# --- Podman API services (Docker-compatible sockets for API clients) --------------------------
if [ ! -S /run/podman/podman.sock ] || ! curl -s --max-time 3 --unix-socket /run/podman/podman.sock http://d/_ping >/dev/null 2>&1; then
  say "starting the rootful Podman API service on /run/podman/podman.sock"
  mkdir -p /run/podman
  nohup podman system service --time=0 unix:///run/podman/podman.sock >"$LOG_DIR/podman-api.log" 2>&1 &
fi
if [ ! -S "$RTDIR/podman/podman.sock" ]; then
  say "starting the rootless Podman API service on $RTDIR/podman/podman.sock"
  as_user mkdir -p "$RTDIR/podman"
  (cd "$RHOME" && nohup runuser -u "$ROOTLESS_USER" -- env XDG_RUNTIME_DIR="$RTDIR" HOME="$RHOME" podman system service --time=0 "unix://$RTDIR/podman/podman.sock" >"$LOG_DIR/podman-api-rootless.log" 2>&1 &)
fi
say "done: docker $(docker version --format '{{.Server.Version}}'), podman $(podman version --format '{{.Client.Version}}'), $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /'), $("$VENV/bin/podman-compose" --version | head -n1)"
