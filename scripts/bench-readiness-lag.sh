#!/usr/bin/env bash
# Readiness lag per run target: for each service, the time from "its healthcheck first passed"
# (the End of the first successful probe in the engine's health log, `State.Health.Log[]` of
# `docker inspect` / `podman inspect`) to "the harness knew" (`services[].unix_ms` of
# `harness up --format json`, taken the moment its readiness loop saw the service ready).
# Goal: p95 <= 250 ms per target. Prints p50 / p95 / max over RUNS stacks x 7 services.
#
#   scripts/bench-readiness-lag.sh [TARGET...]   (default: all six targets)
#   RUNS=3, HYDRA_ROOTLESS_USER=hydra,
#   HYDRA_ENGINE_LOCK=/tmp/hydra-engine.lock (taken per target, released in between; "" = none)
#
# The engine keeps only the last 5 health-log entries, so while `up` runs the script reads the
# log of the run's containers every second and keeps every entry it saw. Where the engine runs the
# probes (Docker) the lag is the harness's polling delay; where the harness runs them itself
# (Podman without systemd: `podman healthcheck run`) the probe's End is inside the harness's own
# call, so the lag is the time for that call to return. In the latter case a service may have
# been answering for up to one probe period (1 s) before the probe that saw it: that is probe
# scheduling, not notification lag, and this figure does not include it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=$ROOT/target/release/harness
RUNS=${RUNS:-3}
USER_RL=${HYDRA_ROOTLESS_USER:-hydra}
LOCK=${HYDRA_ENGINE_LOCK-/tmp/hydra-engine.lock}
ALL=(docker docker-v1 podman podman-v2 podman-rootless podman-rootless-v2)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
    case " ${ALL[*]} " in *" $t "*) ;; *) echo "unknown target '$t' (use: ${ALL[*]})" >&2; exit 2 ;; esac
done
TMP=$(mktemp -d /tmp/hydra-lag.XXXXXX)
chmod 0755 "$TMP"   # the rootless user reads the run's staged files under the state dir
RL_UID=$(id -u "$USER_RL")
POLLER=

(cd "$ROOT" && cargo build -q --release --bin harness)

engine_cmd() {
    case $1 in
        docker*) docker "${@:2}" ;;
        podman-rootless*) (cd / && runuser -u "$USER_RL" -- env XDG_RUNTIME_DIR=/run/user/$RL_UID podman "${@:2}") ;;
        *) podman "${@:2}" ;;
    esac
}

cleanup() {
    [ -z "$POLLER" ] || kill "$POLLER" 2>/dev/null || true
    for rt in "${TARGETS[@]}"; do
        HYDRA_STATE_DIR="$TMP/state" "$HARNESS" down --runtime "$rt" >/dev/null 2>&1 || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every second: the inspect output of the target's harness containers, one JSON array a line.
poll_health_logs() {
    local rt=$1 out=$2 ids
    while :; do
        ids=$(engine_cmd "$rt" ps -aq --filter "label=io.hydra.runtime=$rt" 2>/dev/null || true)
        # shellcheck disable=SC2086
        [ -z "$ids" ] || engine_cmd "$rt" inspect $ids 2>/dev/null | tr -d '\n' >>"$out" && echo >>"$out"
        sleep 1
    done
}

lock() { [ -z "$LOCK" ] || { exec 9>"$LOCK" && flock 9; }; }
unlock() { [ -z "$LOCK" ] || flock -u 9; }

for rt in "${TARGETS[@]}"; do
    lock
    for i in $(seq 1 "$RUNS"); do
        logs=$TMP/health.$rt.$i.jsonl
        : >"$logs"
        poll_health_logs "$rt" "$logs" &
        POLLER=$!
        if ! HYDRA_STATE_DIR="$TMP/state" "$HARNESS" up --runtime "$rt" --format json >"$TMP/up.$rt.$i.json" 2>"$TMP/up.log"; then
            # The harness removed its failed stack; the other targets' samples still count.
            tail -20 "$TMP/up.log" >&2; rm -f "$TMP/up.$rt.$i.json"
            kill "$POLLER" 2>/dev/null || true; wait "$POLLER" 2>/dev/null || true; POLLER=
            echo "  $rt run $i: up failed, no sample" >&2
            continue
        fi
        # One last read, after the harness saw everything ready.
        sleep 1.5
        kill "$POLLER" 2>/dev/null || true; wait "$POLLER" 2>/dev/null || true; POLLER=
        HYDRA_STATE_DIR="$TMP/state" "$HARNESS" down --runtime "$rt" >"$TMP/down.log" 2>&1 ||
            { tail -20 "$TMP/down.log" >&2; exit 1; }
        echo "  $rt run $i done" >&2
    done
    unlock
done

python3 - "$TMP" "${TARGETS[@]}" <<'PY'
import json, re, sys, glob, datetime

tmp, targets = sys.argv[1], sys.argv[2:]

def ms(ts):
    """Unix ms of an engine timestamp (RFC 3339 with up to 9 fraction digits, Z or offset)."""
    m = re.match(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?', ts)
    if not m:
        return None
    base, frac, tz = m.group(1), (m.group(2) or '0')[:6].ljust(6, '0'), m.group(3) or 'Z'
    if tz == 'Z':
        tz = '+00:00'
    elif ':' not in tz:
        tz = tz[:3] + ':' + tz[3:]
    return datetime.datetime.fromisoformat(f'{base}.{frac}{tz}').timestamp() * 1000

def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, -(-len(xs) * p // 100) - 1))  # nearest rank
    return xs[int(k)]

print(f"{'target':<20} {'n':>3} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  probes by")
worst = {}
for rt in targets:
    lags, driver = [], set()
    for up_file in sorted(glob.glob(f'{tmp}/up.{rt}.*.json')):
        run = up_file.split('.')[-2]
        up = json.load(open(up_file))['up']
        first_ok = {}   # container name -> End (ms) of its first successful probe
        for line in open(f'{tmp}/health.{rt}.{run}.jsonl'):
            line = line.strip()
            if not line:
                continue
            try:
                containers = json.loads(line)
            except json.JSONDecodeError:
                continue
            for c in containers:
                name = c.get('Name', '').lstrip('/')
                health = (c.get('State') or {}).get('Health') or (c.get('State') or {}).get('Healthcheck') or {}
                for entry in health.get('Log') or []:
                    if entry.get('ExitCode') == 0 and entry.get('End'):
                        end = ms(entry['End'])
                        if end is not None and end < first_ok.get(name, float('inf')):
                            first_ok[name] = end
        for s in up['services']:
            end = first_ok.get(s['container'])
            if end is None:
                print(f"  {rt} run {run}: {s['service']}: no successful probe seen in the health log", file=sys.stderr)
                continue
            lag = s['unix_ms'] - end
            lags.append(lag)
            driver.add('harness' if s['probes'] else 'engine')
            print(f"  {rt} run {run}: {s['service']:<20} lag {lag:7.0f} ms (harness probes {s['probes']})", file=sys.stderr)
    if not lags:
        print(f'{rt:<20} no samples')
        continue
    worst[rt] = pct(lags, 95)
    print(f"{rt:<20} {len(lags):>3} {pct(lags, 50):>8.0f} {pct(lags, 95):>8.0f} {max(lags):>8.0f}  {'/'.join(sorted(driver))}")
missed = [rt for rt, v in worst.items() if v > 250]
print('goal: p95 <= 250 ms per target:', 'met for all' if worst and not missed else 'NOT met for ' + ', '.join(missed))
PY
