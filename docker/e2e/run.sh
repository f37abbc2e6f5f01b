#!/usr/bin/env bash
# `make e2e`: build every CPU image and check them in containers, on a machine with root and no engine.
#   1. an engine (docker/e2e/engine.sh) and a base image (the public one, else docker/base/build.sh);
#   2. `make wheels` (docker/context.sh), then every CPU image, each built with --network none;
#   3. one FM container read-only, non-root, no capabilities, host network: HEALTHCHECK healthy on a
#      moved port, `ecglens check` passes, `docker stop` drains with exit 0; the ONNX image has no torch,
#      the torch image serves and imports torch;
#   4. compose (docker/e2e/compose.yaml): two FM containers + the orchestrator container, token from a
#      mounted secret, report written to a mounted folder; the same experiment run by `ecglens run` on
#      the host must give an equal results.json (python -m orchestrator.results.diff).
# Removes the containers it started and stops an engine it started; images stay cached.
# Environment: PYTHON (the project's venv python), BASE_IMAGE, ECGLENS_DOCKER_ROOT, KEEP_E2E_DIR=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
export DOCKER_BUILDKIT=0 COMPOSE_HTTP_TIMEOUT=300   # the legacy builder: no buildx plugin needed
TAG=0.1.0
FM_IMAGE=ecglens/embedding-server:$TAG
TORCH_IMAGE=ecglens/embedding-server-torch:$TAG
ORCH_IMAGE=ecglens/orchestrator:$TAG
PROJECT=ecglens-e2e
SOLO=ecglens-e2e-fm
start=$(date +%s)
step() { echo "== [$(( $(date +%s) - start ))s] $*"; }

# shellcheck source=docker/e2e/engine.sh
source docker/e2e/engine.sh
E2E_DIR=$(mktemp -d /tmp/ecglens-e2e.XXXXXX)
export E2E_DIR
compose() {
    if docker compose version >/dev/null 2>&1; then docker compose -p "$PROJECT" -f docker/e2e/compose.yaml "$@"
    else docker-compose -p "$PROJECT" -f docker/e2e/compose.yaml "$@"; fi
}
cleanup() {
    local rc=$?
    set +e
    if [ "$rc" != 0 ]; then
        echo "== e2e FAILED (exit $rc); container logs follow"
        docker logs --tail 40 "$SOLO" 2>&1 | sed 's/^/  solo| /'
        compose logs --no-color --tail 40 2>&1 | sed 's/^/  /'
    fi
    docker rm -f "$SOLO" "$SOLO-torch" >/dev/null 2>&1
    compose down --remove-orphans >/dev/null 2>&1
    [ "${KEEP_E2E_DIR:-0}" = 1 ] || rm -rf "$E2E_DIR"
    engine_down
    exit "$rc"
}
trap cleanup EXIT

step "engine"
engine_up
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "base: $BASE_IMAGE cannot be pulled; building one from Debian's packages"
    BASE_IMAGE=local/python:3.11-bookworm
    docker/base/build.sh "$BASE_IMAGE"
fi

step "wheels, ecglens wheel and zoo packages (make wheels)"
PYTHON="$PYTHON" docker/context.sh

build() {  # CACHE-TAG IMAGE DOCKERFILE [BUILD-ARG...]
    local cache=$1 image=$2 file=$3 t0 target
    shift 3
    t0=$(date +%s)
    local args=(--network none --build-arg BASE_IMAGE="$BASE_IMAGE")
    for a in "$@"; do args+=(--build-arg "$a"); done
    # The build stage gets a tag of its own: the prune below then keeps it, and the next run reuses its
    # layers (the dependency install) instead of repeating it.
    for target in "--target build -t ecglens-e2e/build-stage:$cache" "-t $image"; do
        # shellcheck disable=SC2086
        nice -n 10 docker build -q "${args[@]}" $target -f "$file" . >"$E2E_DIR/build.log" 2>&1 \
            || { cat "$E2E_DIR/build.log"; return 1; }
    done
    echo "built $image in $(( $(date +%s) - t0 ))s: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
}
step "images (base $BASE_IMAGE)"
build server-onnx "$FM_IMAGE-random-resnet" docker/Dockerfile MODEL=random-resnet
build server-onnx "$FM_IMAGE-handcrafted" docker/Dockerfile MODEL=handcrafted
build server-torch "$TORCH_IMAGE-random-resnet" docker/Dockerfile MODEL=random-resnet REQUIREMENTS=server-torch
build orchestrator "$ORCH_IMAGE" docker/Dockerfile.orchestrator
# Images no tag names any more (replaced builds, superseded build stages): the cache keeps only what
# the next run reuses.
docker image prune -f >/dev/null
echo "engine disk: $(docker system df --format '{{.Type}} {{.Size}}' | tr '\n' ' ')"

wait_healthy() {  # CONTAINER: the image's own HEALTHCHECK, up to its 120-s start period and a bit
    local i status
    for i in $(seq 150); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$1")
        [ "$status" = healthy ] && { echo "$1 healthy after ~${i}s"; return 0; }
        [ "$(docker inspect -f '{{.State.Running}}' "$1")" = true ] || { echo "$1 exited" >&2; return 1; }
        sleep 1
    done
    echo "$1 not healthy: $status" >&2
    return 1
}
solo() {  # NAME IMAGE PORT: an FM container as production runs it, on a port other than 8500
    docker run -d --name "$1" --network host --read-only --tmpfs /tmp --user 10001:10001 --cap-drop ALL \
        --security-opt no-new-privileges:true --memory 2g \
        -e ECGLENS_HOST=127.0.0.1 -e ECGLENS_PORT="$3" -e ECGLENS_METRICS_PORT=$(( $3 + 2 )) "$2" >/dev/null
}
step "one FM container: health, contract, drain"
solo "$SOLO" "$FM_IMAGE-random-resnet" 18520
wait_healthy "$SOLO"
"$PYTHON" -m ecglens_cli.main check 127.0.0.1:18520
docker stop -t 30 "$SOLO" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$SOLO")
[ "$code" = 0 ] || { echo "docker stop: the server exited $code, not 0 (no drain)" >&2; exit 1; }
echo "docker stop: drained, exit 0"
docker rm "$SOLO" >/dev/null
docker run --rm --network none --entrypoint python "$FM_IMAGE-random-resnet" -c \
    "import importlib.util, sys; sys.exit('torch in the ONNX image' if importlib.util.find_spec('torch') else 0)"
echo "ONNX image: no torch"
solo "$SOLO-torch" "$TORCH_IMAGE-random-resnet" 18530
wait_healthy "$SOLO-torch"
"$PYTHON" -m ecglens_cli.main check 127.0.0.1:18530 >/dev/null
docker exec "$SOLO-torch" python -c "import torch, services.embedding.backends.torch_backend; print('torch image: serves, torch', torch.__version__)"
docker rm -f "$SOLO-torch" >/dev/null
# KubeRay starts the orchestrator image's containers through `bash -l` (whose profile resets PATH).
docker run --rm --network none --read-only --tmpfs /tmp "$ORCH_IMAGE" bash -lc 'ray --version && ecglens --help >/dev/null'

step "compose: two FM containers + the orchestrator container"
mkdir -p "$E2E_DIR/secrets" "$E2E_DIR/out"
"$PYTHON" -c "import secrets; print(secrets.token_urlsafe(32))" >"$E2E_DIR/secrets/fm-token"
sed "s|@E2E_DIR@|$E2E_DIR|g" docker/e2e/experiment.yaml >"$E2E_DIR/experiment.yaml"
# Compose mounts file secrets as they are on the host: readable by the containers' user only.
chown -R 10001:10001 "$E2E_DIR/secrets" "$E2E_DIR/out"
chmod 0400 "$E2E_DIR/secrets/fm-token"
chmod 0755 "$E2E_DIR"
compose up -d fm-random-resnet fm-handcrafted 2>&1 | grep -v '^Creating\|^Starting' || true
t0=$(date +%s)
compose run --rm orchestrator
echo "orchestrator container: run finished in $(( $(date +%s) - t0 ))s"
test -s "$E2E_DIR/out/results.json" && test -s "$E2E_DIR/out/report.html"
step "the same experiment with ecglens run on the host"
"$PYTHON" -m ecglens_cli.main run "$E2E_DIR/experiment.yaml" --out "$E2E_DIR/host" --quiet >/dev/null
"$PYTHON" -m orchestrator.results.diff "$E2E_DIR/host/results.json" "$E2E_DIR/out/results.json"
compose stop >/dev/null 2>&1
for c in $(compose ps -q); do
    code=$(docker inspect -f '{{.Name}} {{.State.ExitCode}}' "$c")
    [ "${code##* }" = 0 ] || { echo "compose stop: $code (no drain)" >&2; exit 1; }
done
echo "compose stop: every FM container drained, exit 0"
step "passed"
