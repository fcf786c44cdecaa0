# The two commands of the README:
#   make demo   set up .venv and run the whole pipeline on built-in synthetic data
#   make test   set up .venv and run the test suite (what CI runs)
# `make venv GPU=1` installs the CUDA 11 build of MXNet instead of the CPU one.

PYTHON ?= python3
VENV ?= .venv
GPU ?=
REQUIREMENTS := $(if $(GPU),requirements-gpu.txt,requirements.txt)
STAMP := $(VENV)/.installed-$(if $(GPU),gpu,cpu)
PY := $(VENV)/bin/python

.PHONY: venv demo test test-fast bench clean-demo

venv: $(STAMP)

$(STAMP): $(REQUIREMENTS) requirements-common.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(REQUIREMENTS)
	$(PY) -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-*
	touch $@

demo: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" sh shell/run_demo.sh

test: venv
	$(PY) -m pytest -q tests

test-fast: venv
	$(PY) -m pytest -q -m "not slow" tests

bench: venv
	$(PY) bench/bench_index.py

clean-demo:
	rm -rf work/demo
