#!/usr/bin/env bash
# Harness overhead per run target: time for up + healthy + down of the bundled stack by the
# harness (`harness up --runtime T` then `harness down --runtime T`) divided by the same done by a
# plain shell loop with the same compose tool on the same engine. Runs alternate harness / shell;
# the medians of RUNS runs each are compared. Goal: ratio <= 1.05 per target.
#
#   scripts/bench-overhead.sh [TARGET...]   (default: all six: docker docker-v1 podman podman-v2
#                                            podman-rootless podman-rootless-v2)
#   RUNS=3 (per side and target), HYDRA_ROOTLESS_USER=hydra,
#   HYDRA_ENGINE_LOCK=/tmp/hydra-engine.lock (taken per target, released in between; "" = none)
#
# The shell loop is what a user would type:
#   docker              docker compose up -d --wait (Compose v2's own health wait), then
#                       `docker inspect` confirms health, docker compose down
#   docker-v1           the same with docker-compose 1.29
#   podman(-rootless)   podman-compose up -d, `podman healthcheck run` (no systemd runs
#                       healthchecks), podman-compose down, rm by label (podman-compose leaks)
#   podman(-rootless)-v2
#                       DOCKER_HOST=<the engine's standing API socket> docker compose up -d --wait, with
#                       `podman healthcheck run` alongside (Compose v2 waits for service_healthy
#                       dependencies, and nothing else runs the probes), docker compose down
# Both sides run the health loop alongside `up`, as the harness does, and run the same compose
# commands (`--wait` with Compose v2, as the harness does): the ratio is what the harness adds.
#
# Run as root from anywhere; needs target/release/harness (rebuilt if stale). The shell loop uses
# the images the harness built (hashed tags from `harness images`), free loopback ports, and a
# project name of its own; whatever it started is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=$ROOT/target/release/harness
RUNS=${RUNS:-3}
USER_RL=${HYDRA_ROOTLESS_USER:-hydra}
LOCK=${HYDRA_ENGINE_LOCK-/tmp/hydra-engine.lock}
HEALTH_TIMEOUT=300
ALL=(docker docker-v1 podman podman-v2 podman-rootless podman-rootless-v2)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
    case " ${ALL[*]} " in *" $t "*) ;; *) echo "unknown target '$t' (use: ${ALL[*]})" >&2; exit 2 ;; esac
done
TMP=$(mktemp -d /tmp/hydra-overhead.XXXXXX)
chmod 0755 "$TMP"
ACTIVE=()   # "target project" pairs to remove on exit
RL_UID=$(id -u "$USER_RL")

# Always rebuild (a no-op when current): a stale binary would time old code.
(cd "$ROOT" && cargo build -q --release --bin harness)

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print a[(NR+1)/2]} else {printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}}'; }

is_rootless() { case $1 in podman-rootless*) return 0 ;; *) return 1 ;; esac; }
is_v2_on_podman() { case $1 in podman-v2 | podman-rootless-v2) return 0 ;; *) return 1 ;; esac; }
engine() { case $1 in docker*) echo docker ;; *) echo podman ;; esac; }
# The compose tool's command words.
compose_tool() {
    case $1 in
        docker | podman-v2 | podman-rootless-v2) echo "docker compose" ;;
        docker-v1) echo docker-compose ;;
        *) echo podman-compose ;;
    esac
}

# `up` flags beyond `-d --no-build`: Compose v2 users wait for health with `--wait`.
up_wait() {
    case $1 in docker | podman-v2 | podman-rootless-v2) echo --wait ;; esac
    return 0
}

# Runs a command as the target's user (root, or the rootless user) in compose/.
as_rt() {
    local rt=$1; shift
    if is_rootless "$rt"; then
        (cd "$ROOT/compose" && runuser -u "$USER_RL" -- env XDG_RUNTIME_DIR=/run/user/$RL_UID "$@")
    else
        (cd "$ROOT/compose" && env "$@")
    fi
}

# PHOENIX_IMAGE_<SERVICE>=<hashed tag> from `harness images` for this target.
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
    [ "$(engine "$rt")" = docker ] || echo "BUILDAH_FORMAT=docker"
    case $rt in
        podman-v2) echo "DOCKER_HOST=unix:///run/podman/podman.sock" ;;
        podman-rootless-v2) echo "DOCKER_HOST=unix:///run/user/$RL_UID/podman/podman.sock" ;;
    esac
}

# Compose v2 sends a service's seccomp profile inline and Podman 4.3's API refuses it (it wants a
# path), so a user of Compose v2 on Podman leaves the profile out with an override, as the harness
# does (engine/src/compose/v2_on_podman.rs). The harness then sets the profile engine-wide on its
# per-run API service; that only matters for the posture checks, not for timing, so the plain
# loop drops seccomp for these two targets and talks to the engine's standing API service.
V2_OVERRIDE=$TMP/no-inline-seccomp.yml
{
    echo "services:"
    for svc in db gap-detector recurrent-processor analysis-engine model-service rubik-agent nginx; do
        printf '  %s:\n    security_opt: !override ["no-new-privileges:true"]\n' "$svc"
    done
} >"$V2_OVERRIDE"
chmod 0644 "$V2_OVERRIDE"
compose_files() {
    echo "-f phoenix.yml"
    is_v2_on_podman "$1" && echo "-f $V2_OVERRIDE"
    return 0
}

project_ids() { as_rt "$1" "$(engine "$1")" ps -aq --filter "label=com.docker.compose.project=$2"; }

cleanup() {
    for entry in "${ACTIVE[@]}"; do
        [ -n "${entry// /}" ] || continue
        set -- $entry
        # shellcheck disable=SC2046
        as_rt "$1" $(cat "$TMP/env.$2" 2>/dev/null) $(compose_tool "$1") -p "$2" $(compose_files "$1") down -v -t 5 >/dev/null 2>&1 || true
        # podman-compose `down -v` leaks anonymous volumes and exits 0 whatever happened: sweep by label.
        local e; e=$(engine "$1")
        as_rt "$1" "$e" rm -f -v $(project_ids "$1" "$2") >/dev/null 2>&1 || true
    done
    # A harness stack left by an interrupted `up`/`down` pair (the harness cleans its own on failure).
    for rt in "${TARGETS[@]}"; do
        HYDRA_STATE_DIR="$TMP/state" "$HARNESS" down --runtime "$rt" >/dev/null 2>&1 || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One up + healthy + down by the shell loop; prints seconds. `up -d` runs in the background while
# the loop waits for health (and, on Podman, runs the probes), as a user must with Compose v2 on
# Podman and as the harness does everywhere.
shell_cycle() {
    local rt=$1 i=$2 project="hydra-sh-$$-$2" e tool t0 ids deadline up_pid up_rc=
    e=$(engine "$rt"); tool=$(compose_tool "$rt")
    compose_env "$rt" >"$TMP/env.$project"
    local envs; envs=$(cat "$TMP/env.$project")
    ACTIVE+=("$rt $project")
    t0=$(now)
    start_up() {
        # shellcheck disable=SC2046,SC2086
        as_rt "$rt" $envs $tool -p "$project" $(compose_files "$rt") up -d --no-build $(up_wait "$rt") >"$TMP/up.log" 2>&1 &
        up_pid=$!
    }
    start_up
    deadline=$((SECONDS + HEALTH_TIMEOUT))
    declare -A healthy=()
    while :; do
        if [ -z "$up_rc" ] && ! kill -0 "$up_pid" 2>/dev/null; then
            wait "$up_pid" && up_rc=0 || up_rc=$?
            # Compose v2 gives up when a dependency is unhealthy for a moment (aardvark-dns 1.4
            # outages on Podman 4.3): a user runs it again, and so does the harness.
            if [ "$up_rc" -ne 0 ] && grep -q "is unhealthy" "$TMP/up.log" && [ $SECONDS -lt $deadline ]; then
                echo "  shell loop: compose up gave up ($(grep -m1 'is unhealthy' "$TMP/up.log")); running it again" >&2
                sleep 3; up_rc=; start_up; continue
            fi
            [ "$up_rc" -eq 0 ] || { cat "$TMP/up.log" >&2; return 1; }
        fi
        ids=$(project_ids "$rt" "$project")
        local n=0 ok=0
        for id in $ids; do
            n=$((n + 1))
            if [ -z "${healthy[$id]:-}" ]; then
                if [ "$e" = docker ]; then
                    [ "$(docker inspect --format '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] && healthy[$id]=1
                else
                    as_rt "$rt" podman healthcheck run "$id" >/dev/null 2>&1 && healthy[$id]=1
                fi
            fi
            [ -n "${healthy[$id]:-}" ] && ok=$((ok + 1))
        done
        [ "$n" -eq 7 ] && [ "$ok" -eq 7 ] && [ -n "$up_rc" ] && break
        [ $SECONDS -lt $deadline ] || { kill "$up_pid" 2>/dev/null; echo "shell loop: $project not healthy after ${HEALTH_TIMEOUT}s" >&2; return 1; }
        sleep 0.5
    done
    # shellcheck disable=SC2046,SC2086
    as_rt "$rt" $envs $tool -p "$project" $(compose_files "$rt") down -v -t 10 >/dev/null 2>&1
    as_rt "$rt" "$e" rm -f -v $(project_ids "$rt" "$project") >/dev/null 2>&1 || true
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

# The engine lock other users of this host's engines take too; held per target only.
lock() { [ -z "$LOCK" ] || { exec 9>"$LOCK" && flock 9; }; }
unlock() { [ -z "$LOCK" ] || flock -u 9; }

RESULTS=()
for rt in "${TARGETS[@]}"; do
    lock   # `harness images` builds what is missing
    image_env "$rt" >"$TMP/images.$rt"
    [ "$(wc -l <"$TMP/images.$rt")" -ge 7 ] || { unlock; echo "$rt: skipped: \`harness images --runtime $rt\` did not list 7 images" >&2; continue; }
    h=(); s=()
    for i in $(seq 1 "$RUNS"); do
        # Not in $(...): the cycles record what they started (ACTIVE) for the exit trap.
        harness_cycle "$rt" >"$TMP/seconds"; h+=("$(cat "$TMP/seconds")")
        shell_cycle "$rt" "$i" >"$TMP/seconds"; s+=("$(cat "$TMP/seconds")")
        echo "  $rt run $i: harness ${h[-1]}s, shell ${s[-1]}s" >&2
    done
    unlock
    hm=$(printf '%s\n' "${h[@]}" | median); sm=$(printf '%s\n' "${s[@]}" | median)
    RESULTS+=("$(printf '%-20s %-28s %-28s %.3f' "$rt" "$(printf '%.2f; %s' "$hm" "$(printf '%.1f ' "${h[@]}")")" \
        "$(printf '%.2f; %s' "$sm" "$(printf '%.1f ' "${s[@]}")")" "$(echo "$hm / $sm" | bc -l)")")
    echo "${RESULTS[-1]}" >&2
done
printf '%-20s %-28s %-28s %s\n' target "harness s (median; runs)" "shell loop s (median; runs)" "ratio"
printf '%s\n' "${RESULTS[@]}"
echo "goal: ratio <= 1.05 per target (harness time / shell loop time)"
