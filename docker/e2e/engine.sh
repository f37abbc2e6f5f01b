# Sourced by docker/e2e/run.sh: engine_up makes `docker` answer, engine_down stops only what engine_up
# started. Where no engine answers it installs Debian's (docker.io, docker-compose; root) and starts it
# with its own socket and data root: overlay2 first, vfs where overlay2 does not mount. The data root
# survives (images stay cached between runs): ECGLENS_DOCKER_ROOT, default /var/lib/ecglens-docker.
ENGINE_ROOT=${ECGLENS_DOCKER_ROOT:-/var/lib/ecglens-docker}
ENGINE_RUN=/run/ecglens-docker
ENGINE_STARTED=0

engine_up() {
    if docker info >/dev/null 2>&1; then
        echo "engine: using the one at ${DOCKER_HOST:-the default socket}"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "engine: none answers and starting one needs root" >&2
        return 1
    fi
    if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
        echo "engine: installing Debian's docker.io and docker-compose"
        # Package lists may be missing or stale on a fresh machine: refresh them once if the install fails.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io docker-compose >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io docker-compose >/dev/null; }
    fi
    mkdir -p "$ENGINE_ROOT" "$ENGINE_RUN"
    export DOCKER_HOST="unix://$ENGINE_RUN/docker.sock"
    local driver
    for driver in overlay2 vfs; do
        # No bridge or iptables: containers use host networking and the host's firewall stays untouched.
        dockerd --storage-driver="$driver" --bridge=none --iptables=false --ip-masq=false \
            --data-root="$ENGINE_ROOT/$driver" --exec-root="$ENGINE_RUN/exec" \
            --pidfile="$ENGINE_RUN/dockerd.pid" -H "$DOCKER_HOST" >"$ENGINE_RUN/dockerd-$driver.log" 2>&1 &
        ENGINE_PID=$!
        local i
        for i in $(seq 60); do
            if docker info >/dev/null 2>&1; then
                ENGINE_STARTED=1
                echo "engine: started dockerd ($driver, data root $ENGINE_ROOT/$driver)"
                return 0
            fi
            kill -0 "$ENGINE_PID" 2>/dev/null || break
            sleep 1
        done
        kill "$ENGINE_PID" 2>/dev/null || true
        wait "$ENGINE_PID" 2>/dev/null || true
        echo "engine: dockerd with $driver did not start: $(tail -n 1 "$ENGINE_RUN/dockerd-$driver.log")"
    done
    return 1
}

engine_down() {
    [ "$ENGINE_STARTED" = 1 ] || return 0
    kill "$ENGINE_PID" 2>/dev/null || true
    wait "$ENGINE_PID" 2>/dev/null || true
    ENGINE_STARTED=0
    echo "engine: stopped the dockerd it started"
}
