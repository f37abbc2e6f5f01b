# The two commands of the README: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The CPU build of torch. Where the default index serves CUDA builds (plain PyPI on Linux), add
# TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu to avoid several GB of CUDA wheels.
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test venv protos bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a bare `torch` requirement would pull several GB of CUDA wheels.
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(PY) -m pip install -q -e ".[dev]"
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

clean:
	rm -rf $(VENV) reports .pytest_cache
