#!/usr/bin/env bash
# Honesty check of the harness's load generator: its req/s divided by wrk's on the same nginx
# endpoint with the same connections, threads and duration. Goal: >= 0.95. Runs alternate
# wrk / hydra-load; medians of RUNS runs each are compared.
#
#   scripts/bench-wrk-ratio.sh [URL]
#     URL         loopback URL to load (default: bring up the stack with `harness up` under
#                 RUNTIME and use nginx's /health; the stack is taken down on exit)
#   RUNTIME=docker CONNECTIONS=16 DURATION=10 RUNS=3 THREADS=$(nproc)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HARNESS=$ROOT/target/release/harness
RUNTIME=${RUNTIME:-docker}
CONNECTIONS=${CONNECTIONS:-16}
DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
THREADS=${THREADS:-$(nproc)}
URL=${1:-}
RUN_ID=

command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
(cd "$ROOT" && cargo build --release -q -p hydra-benches --bin hydra-load)
LOAD=$TARGET/release/hydra-load

cleanup() {
    if [ -n "$RUN_ID" ]; then
        "$HARNESS" down --runtime "$RUNTIME" --run "$RUN_ID" >/dev/null || echo "warning: harness down --run $RUN_ID failed" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$URL" ]; then
    [ -x "$HARNESS" ] || (cd "$ROOT" && cargo build --release -q --bin harness)
    out=$("$HARNESS" up --runtime "$RUNTIME" 2>/dev/null)
    RUN_ID=$(sed -n 's/.*(run \([0-9a-z]*\))\..*/\1/p' <<<"$out")
    port=$(sed -n 's/ *PHOENIX_NGINX_PORT = [0-9.]*:\([0-9]*\)/\1/p' <<<"$out")
    [ -n "$RUN_ID" ] && [ -n "$port" ] || { echo "error: could not read the run id and nginx port from harness up:" >&2; echo "$out" >&2; exit 1; }
    URL=http://127.0.0.1:$port/health
fi
case "$URL" in http://127.*|http://localhost*) ;; *) echo "error: $URL is not a loopback URL" >&2; exit 2 ;; esac

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) {print a[(NR+1)/2]} else {printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}}'; }

echo "target $URL: $CONNECTIONS connections, $THREADS threads, ${DURATION}s per run, $RUNS runs each" >&2
# Warm both paths (connections, nginx workers, caches) before measuring.
wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "$URL" >/dev/null
"$LOAD" "$URL" -c "$CONNECTIONS" -t "$THREADS" -d 2 >/dev/null
w=(); h=()
for i in $(seq 1 "$RUNS"); do
    wout=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$URL")
    w+=("$(awk '/Requests\/sec:/ {print $2}' <<<"$wout")")
    wp50=$(awk '$1=="50%" {print $2}' <<<"$wout"); wp99=$(awk '$1=="99%" {print $2}' <<<"$wout")
    hout=$("$LOAD" "$URL" -c "$CONNECTIONS" -t "$THREADS" -d "$DURATION" --json)
    read -r hrps hp50 hp99 herr < <(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); l=r["latency"]; print("%.1f %.2fms %.2fms %d" % (r["rps"], l["p50_us"]/1000, l["p99_us"]/1000, r["non_success"]+r["transport_errors"]))' "$hout")
    h+=("$hrps")
    echo "  run $i: wrk ${w[-1]} req/s (p50 $wp50, p99 $wp99) | hydra-load $hrps req/s (p50 $hp50, p99 $hp99, errors $herr)" >&2
done
wm=$(printf '%s\n' "${w[@]}" | median); hm=$(printf '%s\n' "${h[@]}" | median)
printf 'wrk median %s req/s; hydra-load median %s req/s; ratio hydra-load/wrk = %.3f (goal >= 0.95)\n' "$wm" "$hm" "$(echo "$hm / $wm" | bc -l)"
