# The two commands of the README: `make demo` and `make test`. Both set up .venv themselves.
# Containers: `make wheels` prepares what the images install, `make e2e` builds and checks them all.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The CPU build of torch. Where the default index serves CUDA builds (plain PyPI on Linux), add
# TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu to avoid several GB of CUDA wheels.
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test venv protos bench clean lock wheels wheels-gpu e2e

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a bare `torch` requirement would pull several GB of CUDA wheels.
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(TORCH_INDEX)
	# constraints.txt: the versions tested here, the same the images install.
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ecglens demo

test: $(STAMP)
	$(PY) -m pytest -q tests

protos: $(STAMP)
	$(PY) -m protos.generate

bench: $(STAMP)
	$(PY) bench/serve_throughput.py

# Rewrite the lock from the venv after changing a dependency (then `make wheels` and rebuild the images).
lock: $(STAMP)
	{ sed -n '1,2p' constraints.txt; $(PY) -m pip freeze --all --exclude-editable | grep -v -e '^#' -e '^pip==' \
	  | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > constraints.txt.new && mv constraints.txt.new constraints.txt

# docker/build/: the wheelhouse, the ecglens wheel and the zoo packages the images install (no network
# in `docker build`). MODELS="random-resnet handcrafted" by default.
wheels: $(STAMP)
	PYTHON=$(PY) TORCH_SPEC="$(TORCH_SPEC)" TORCH_INDEX="$(TORCH_INDEX)" docker/context.sh

# The GPU image's wheelhouse (docker/Dockerfile.gpu): CUDA wheels for the CUDA base's Python 3.12, several
# GB. Not run on the development machines (no GPU image can be built there).
wheels-gpu: $(STAMP)
	$(PY) -m pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
	  --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d docker/build/wheels-gpu -c constraints.txt -r docker/requirements/server-gpu.txt

# Every CPU image built and run in containers against the contract and the host (docker/e2e/run.sh).
# Needs root where no Docker engine answers (it then installs and starts Debian's).
e2e: $(STAMP)
	PYTHON=$(PY) TORCH_SPEC="$(TORCH_SPEC)" TORCH_INDEX="$(TORCH_INDEX)" docker/e2e/run.sh

clean:
	rm -rf $(VENV) reports .pytest_cache docker/build
