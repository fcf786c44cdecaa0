# The two commands of the README:
#   make demo   set up .venv and run the whole pipeline on built-in synthetic data
#   make test   set up .venv and run the test suite (what CI runs)
# BACKEND: `both` (default) installs MXNet and the PyTorch backend (requirements-torch.txt)
# into one environment, `mxnet` MXNet alone, `torch` PyTorch alone (no MXNet: the tests of
# tests/torch that need the Gluon side skip). `make venv GPU=1` installs the CUDA 11 build
# of MXNet instead of the CPU one; its CUDA 11 libraries and PyTorch's CUDA 13 ones share
# folders, so GPU=1 implies BACKEND=mxnet (put PyTorch in another VENV).
# The MXNet suite and tests/torch run in separate pytest processes: the two frameworks ship
# different OpenMP runtimes and must not share a process.

PYTHON ?= python3
VENV ?= .venv
GPU ?=
BACKEND ?= $(if $(GPU),mxnet,both)
MXNET_REQUIREMENTS := $(if $(GPU),requirements-gpu.txt,requirements.txt)
REQUIREMENTS_both := $(MXNET_REQUIREMENTS) requirements-torch.txt
REQUIREMENTS_mxnet := $(MXNET_REQUIREMENTS)
REQUIREMENTS_torch := requirements-torch.txt
REQUIREMENTS := $(REQUIREMENTS_$(BACKEND))
STAMP := $(VENV)/.installed-$(BACKEND)-$(if $(GPU),gpu,cpu)
PY := $(VENV)/bin/python
PYTEST_MXNET := $(if $(filter both mxnet,$(BACKEND)),$(PY) -m pytest -q tests --ignore=tests/torch)
PYTEST_TORCH := $(if $(filter both torch,$(BACKEND)),$(PY) -m pytest -q tests/torch)

ifeq ($(REQUIREMENTS),)
$(error BACKEND must be both, mxnet or torch, not '$(BACKEND)')
endif
ifneq ($(and $(GPU),$(filter-out mxnet,$(BACKEND))),)
$(error GPU=1 (mxnet-cu112, CUDA 11) clashes with PyTorch's CUDA 13 libraries: BACKEND=mxnet; torch in another VENV)
endif

.PHONY: venv demo test test-fast bench clean-demo

venv: $(STAMP)

$(STAMP): $(REQUIREMENTS) requirements-common.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(addprefix -r ,$(REQUIREMENTS))
	$(PY) -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-*
	touch $@

demo: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" sh shell/run_demo.sh

test: venv
	$(PYTEST_MXNET)
	$(PYTEST_TORCH)

test-fast: venv
	$(if $(PYTEST_MXNET),$(PYTEST_MXNET) -m "not slow")
	$(if $(PYTEST_TORCH),$(PYTEST_TORCH) -m "not slow")

bench: venv
	$(PY) bench/bench_index.py

clean-demo:
	rm -rf work/demo
