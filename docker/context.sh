#!/usr/bin/env bash
# `make wheels`: everything the images install, prepared on the host, so `docker build` needs no network.
#   docker/build/wheels/   every third-party wheel of docker/requirements/*.txt, pinned by constraints.txt
#   docker/build/ecglens/  the ecglens wheel of this checkout (rebuilt every time)
#   docker/build/models/   the zoo packages named in $MODELS (deterministic; built by the host's torch)
# Environment: PYTHON (the project's venv python), TORCH_SPEC, TORCH_INDEX, MODELS.
set -euo pipefail
# pip warns about every configured local index that lacks a package; keep real messages only.
quiet() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-}
MODELS=${MODELS:-random-resnet handcrafted}
out=docker/build
mkdir -p "$out/wheels" "$out/ecglens" "$out/models"

# torch alone first, from TORCH_INDEX where given: the CPU build, not PyPI's CUDA one with its GBs of
# nvidia-* wheels. The resolve below then finds it in the wheelhouse.
# shellcheck disable=SC2086
quiet "$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$out/wheels" "$TORCH_SPEC" $TORCH_INDEX
quiet "$PYTHON" -m pip wheel -q --wheel-dir "$out/wheels" --find-links "$out/wheels" -c constraints.txt \
    -r docker/requirements/server-torch.txt -r docker/requirements/orchestrator.txt

# A stale build/lib could carry deleted modules into the wheel. Timestamps from the last commit make the
# wheel reproducible, so an unchanged checkout reuses the images' cached layers.
rm -rf build "$out/ecglens"/*.whl
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
    quiet "$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$out/ecglens" .
rm -rf build

for model in $MODELS; do
    "$PYTHON" -m ecglens_cli.main zoo build --out "$out/models" --only "$model" >"$out/zoo-build.log" 2>&1 \
        || { cat "$out/zoo-build.log" >&2; exit 1; }
done
du -sh "$out/wheels" "$out/ecglens" "$out/models"
