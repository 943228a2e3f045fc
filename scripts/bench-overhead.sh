#!/usr/bin/env bash
# Harness overhead: time for up + healthy + down of the bundled stack by the harness
# (`harness up --runtime R` then `harness down --runtime R`) divided by the same done by a plain shell loop over the compose
# tool and `inspect` (docker) / `podman healthcheck run` (podman: no systemd runs healthchecks).
# Goal: <= 1.15. Runs alternate harness / shell; medians of RUNS runs each are compared.
#
#   scripts/bench-overhead.sh [RUNTIME...]      (default: docker podman podman-rootless)
#   RUNS=3 (per side and runtime), HYDRA_ROOTLESS_USER=hydra
#
# Run as root from anywhere; needs target/release/harness (built if missing). The shell loop uses
# the images the harness built (hashed tags from `harness images`), free loopback ports, and a
# project name of its own; whatever it started is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=$ROOT/target/release/harness
RUNS=${RUNS:-3}
USER_RL=${HYDRA_ROOTLESS_USER:-hydra}
HEALTH_TIMEOUT=300
RUNTIMES=("$@")
[ ${#RUNTIMES[@]} -gt 0 ] || RUNTIMES=(docker podman podman-rootless)
TMP=$(mktemp -d /tmp/hydra-overhead.XXXXXX)
chmod 0755 "$TMP"
ACTIVE=()   # "runtime project" pairs to remove on exit

# Always rebuild (a no-op when current): a stale binary would time old code.
(cd "$ROOT" && cargo build -q --release --bin harness)

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print a[(NR+1)/2]} else {printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}}'; }

# Runs a command as the runtime's user: root for docker/podman, the rootless user otherwise.
as_rt() {
    local rt=$1; shift
    if [ "$rt" = podman-rootless ]; then
        local uid; uid=$(id -u "$USER_RL")
        (cd "$ROOT/compose" && runuser -u "$USER_RL" -- env XDG_RUNTIME_DIR=/run/user/$uid "$@")
    else
        (cd "$ROOT/compose" && env "$@")
    fi
}
engine() { [ "$1" = docker ] && echo docker || echo podman; }
compose_tool() { [ "$1" = docker ] && echo docker-compose || echo podman-compose; }

# PHOENIX_IMAGE_<SERVICE>=<hashed tag> from `harness images` for this runtime.
image_env() {
    "$HARNESS" images --runtime "$1" 2>/dev/null | grep -o 'localhost/phoenix/[^ ]*:h-[0-9a-f]* *┆ *[a-z-]*' |
        sed 's/ *┆ */ /' | while read -r img svc; do
            echo "PHOENIX_IMAGE_$(echo "$svc" | tr 'a-z-' 'A-Z_')=$img"
        done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

compose_env() {
    local rt=$1
    echo "PHOENIX_BIND_IP=127.0.0.1"
    for v in PHOENIX_DB_PORT PHOENIX_GAP_DETECTOR_PORT PHOENIX_RECURRENT_PROCESSOR_PORT PHOENIX_ANALYSIS_ENGINE_PORT PHOENIX_NGINX_PORT; do
        echo "$v=$(free_port)"
    done
    cat "$TMP/images.$rt"
    [ "$rt" = docker ] || echo "BUILDAH_FORMAT=docker"
}

cleanup() {
    for entry in "${ACTIVE[@]}"; do
        [ -n "${entry// /}" ] || continue
        set -- $entry
        as_rt "$1" $(cat "$TMP/env.$2" 2>/dev/null) "$(compose_tool "$1")" -p "$2" -f phoenix.yml down -v -t 5 >/dev/null 2>&1 || true
        # podman-compose `down -v` leaks anonymous volumes and exits 0 whatever happened: sweep by label.
        local e; e=$(engine "$1")
        as_rt "$1" "$e" rm -f -v $(as_rt "$1" "$e" ps -aq --filter "label=com.docker.compose.project=$2") >/dev/null 2>&1 || true
    done
    # A harness stack left by an interrupted `up`/`down` pair (the harness cleans its own on failure).
    for rt in "${RUNTIMES[@]}"; do
        HYDRA_STATE_DIR="$TMP/state" "$HARNESS" down --runtime "$rt" >/dev/null 2>&1 || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One up + healthy + down by the shell loop; prints seconds.
shell_cycle() {
    local rt=$1 i=$2 project="hydra-sh-$$-$2" e tool t0 ids deadline
    e=$(engine "$rt"); tool=$(compose_tool "$rt")
    compose_env "$rt" >"$TMP/env.$project"
    local envs; envs=$(cat "$TMP/env.$project")
    ACTIVE+=("$rt $project")
    t0=$(now)
    as_rt "$rt" $envs "$tool" -p "$project" -f phoenix.yml up -d --no-build >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log" >&2; return 1; }
    deadline=$((SECONDS + HEALTH_TIMEOUT))
    declare -A healthy=()
    while :; do
        ids=$(as_rt "$rt" "$e" ps -aq --filter "label=com.docker.compose.project=$project")
        local n=0 ok=0
        for id in $ids; do
            n=$((n + 1))
            if [ -n "${healthy[$id]:-}" ]; then ok=$((ok + 1)); continue; fi
            if [ "$e" = docker ]; then
                [ "$(docker inspect --format '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] && healthy[$id]=1
            else
                as_rt "$rt" podman healthcheck run "$id" >/dev/null 2>&1 && healthy[$id]=1
            fi
            [ -n "${healthy[$id]:-}" ] && ok=$((ok + 1))
        done
        [ "$n" -eq 7 ] && [ "$ok" -eq 7 ] && break
        [ $SECONDS -lt $deadline ] || { echo "shell loop: $project not healthy after ${HEALTH_TIMEOUT}s" >&2; return 1; }
        sleep 0.5
    done
    as_rt "$rt" $envs "$tool" -p "$project" -f phoenix.yml down -v -t 10 >/dev/null 2>&1
    as_rt "$rt" "$e" rm -f -v $(as_rt "$rt" "$e" ps -aq --filter "label=com.docker.compose.project=$project") >/dev/null 2>&1 || true
    ACTIVE=("${ACTIVE[@]/"$rt $project"}")
    echo "$(now) - $t0" | bc
}

# One up + healthy + down by the harness (`up` waits until healthy, `down` verifies nothing is
# left); prints seconds. Its run records go to a private state dir.
harness_cycle() {
    local rt=$1 t0
    t0=$(now)
    HYDRA_STATE_DIR="$TMP/state" "$HARNESS" up --runtime "$rt" >"$TMP/up.log" 2>&1 || { tail -20 "$TMP/up.log" >&2; return 1; }
    HYDRA_STATE_DIR="$TMP/state" "$HARNESS" down --runtime "$rt" >"$TMP/down.log" 2>&1 || { tail -20 "$TMP/down.log" >&2; return 1; }
    echo "$(now) - $t0" | bc
}

printf '%-16s %-28s %-28s %s\n' runtime "harness s (median; runs)" "shell loop s (median; runs)" "ratio"
for rt in "${RUNTIMES[@]}"; do
    image_env "$rt" >"$TMP/images.$rt"
    [ "$(wc -l <"$TMP/images.$rt")" -ge 7 ] || { echo "$rt: skipped: \`harness images --runtime $rt\` did not list 7 images" >&2; continue; }
    h=(); s=()
    for i in $(seq 1 "$RUNS"); do
        h+=("$(harness_cycle "$rt")")
        s+=("$(shell_cycle "$rt" "$i")")
        echo "  $rt run $i: harness ${h[-1]}s, shell ${s[-1]}s" >&2
    done
    hm=$(printf '%s\n' "${h[@]}" | median); sm=$(printf '%s\n' "${s[@]}" | median)
    printf '%-16s %-28s %-28s %.3f\n' "$rt" "$(printf '%.2f; %s' "$hm" "$(printf '%.1f ' "${h[@]}")")" \
        "$(printf '%.2f; %s' "$sm" "$(printf '%.1f ' "${s[@]}")")" "$(echo "$hm / $sm" | bc -l)"
done
echo "goal: ratio <= 1.15 (harness time / shell loop time)"
