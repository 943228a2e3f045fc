#!/usr/bin/env bash
# Overlap of targets in one `harness validate`: the wall time of one validate over all targets
# divided by the sum of the wall times of `harness validate --runtime T` run alone for each target
# (each: up + checks + down). Goal: ratio <= 0.6.
#
#   scripts/bench-overlap.sh [TARGET...]   (default: all six targets)
#   RUNS=1 (repetitions of the whole measurement; medians are compared),
#   HYDRA_ENGINE_LOCK=/tmp/hydra-engine.lock (`flock` around each validate run; "" = none)
#
# Each alone run is its own process and so also pays validate's fixed costs (doctor's diagnosis
# of the target, reports) once; the combined run pays them once for all targets. Reports go to a
# private directory; exit codes are shown (1 = some check failed, which is timed all the same).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=$ROOT/target/release/harness
RUNS=${RUNS:-1}
LOCK=${HYDRA_ENGINE_LOCK-/tmp/hydra-engine.lock}
ALL=(docker docker-v1 podman podman-v2 podman-rootless podman-rootless-v2)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
    case " ${ALL[*]} " in *" $t "*) ;; *) echo "unknown target '$t' (use: ${ALL[*]})" >&2; exit 2 ;; esac
done
TMP=$(mktemp -d /tmp/hydra-overlap.XXXXXX)
chmod 0755 "$TMP"
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

(cd "$ROOT" && cargo build -q --release --bin harness)

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print a[(NR+1)/2]} else {printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}}'; }
locked() { if [ -n "$LOCK" ]; then flock "$LOCK" "$@"; else "$@"; fi; }

# Times one `harness validate` over the given targets (under the engine lock, taken per run);
# prints seconds and the exit code.
validate() {
    local name=$1 t0 t1 rc args=(); shift
    for t in "$@"; do args+=(--runtime "$t"); done
    # Timed inside the lock: waiting for another user of the engines is not validate's time.
    locked bash -c 't0=$(date +%s.%N); "$@" || rc=$?; echo "$t0 $(date +%s.%N) ${rc:-0}" >"$0"' "$TMP/$name.time" \
        env -C "$ROOT" HYDRA_STATE_DIR="$TMP/state" HYDRA_RUNTIMES= HYDRA_REQUIRE= "$HARNESS" validate "${args[@]}" \
        --junit "$TMP/$name.xml" --report "$TMP/$name" >"$TMP/$name.log" 2>&1 || true
    read -r t0 t1 rc <"$TMP/$name.time"
    # A failed check is timed all the same; its log is kept for a look.
    [ "$rc" -eq 0 ] || { cp "$TMP/$name.log" "/tmp/hydra-overlap-$name.log"; echo "  $name: exit $rc, log kept in /tmp/hydra-overlap-$name.log" >&2; }
    echo "$(echo "$t1 - $t0" | bc) $rc"
}

declare -A alone=()
combined=(); ratios=()
for r in $(seq 1 "$RUNS"); do
    sum=0
    for t in "${TARGETS[@]}"; do
        read -r secs rc < <(validate "alone-$t-$r" "$t")
        echo "  run $r: $t alone: ${secs}s (exit $rc)" >&2
        alone[$t]="${alone[$t]:-} $secs"
        sum=$(echo "$sum + $secs" | bc)
    done
    read -r secs rc < <(validate "all-$r" "${TARGETS[@]}")
    echo "  run $r: all ${#TARGETS[@]} targets in one validate: ${secs}s (exit $rc); sum alone ${sum}s" >&2
    combined+=("$secs")
    ratios+=("$(echo "$secs / $sum" | bc -l)")
done

printf '%-20s %s\n' target "alone s (median of $RUNS)"
total=0
for t in "${TARGETS[@]}"; do
    m=$(printf '%s\n' ${alone[$t]} | median)
    total=$(echo "$total + $m" | bc)
    printf '%-20s %.1f\n' "$t" "$m"
done
printf '%-20s %.1f\n' "sum" "$total"
printf '%-20s %.1f\n' "one validate" "$(printf '%s\n' "${combined[@]}" | median)"
printf '%-20s %.3f (runs: %s)\n' "ratio" "$(printf '%s\n' "${ratios[@]}" | median)" "$(printf '%.3f ' "${ratios[@]}")"
echo "goal: ratio <= 0.6 (one validate over all targets / sum of each target alone)"
