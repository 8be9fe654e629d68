# zhichao — the two set-up commands are `make demo` and `make test`; everything else is here too.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH ?= all

.PHONY: help setup native services demo screenshots test bench fuzz crash lint format annotate clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py
	@command -v $(PYTHON) >/dev/null || { echo "zhichao needs $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cython numpy
	$(PY) -m pip install -q --no-build-isolation -e '.[dev,embedded]'
	touch $(STAMP)

native: $(STAMP)  ## compile the Cython kernels in place (fails if they cannot be built)
	KERNELS_REQUIRE_NATIVE=1 $(PY) setup.py -q build_ext --inplace

services:  ## install Debian's redis-server, postgresql, chromium, Pango (PDF) and a CJK font
	@missing=""; command -v redis-server >/dev/null || missing="redis-server"; \
	  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  test -x /usr/bin/chromium || missing="$$missing chromium"; \
	  test -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || missing="$$missing fonts-wqy-microhei"; \
	  ldconfig -p | grep -q libpangoft2-1.0 || missing="$$missing libpango-1.0-0 libpangoft2-1.0-0"; \
	  if [ -n "$$missing" ]; then echo "installing$$missing from Debian"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

setup: $(STAMP) native services  ## venv, package with extras, native kernels, Redis, PostgreSQL

demo: setup  ## the example city live: broker, Redis, PostgreSQL, a worker, the simulator (Ctrl-C stops)
	$(VENV)/bin/zhichao up

screenshots: setup  ## run the demo 100 s and write docs/img/{dashboard,history,officer,desk}.png for the README
	$(VENV)/bin/zhichao up --for 100 --screenshots docs/img

test: setup  ## the whole test suite (fails if no test ran)
	NUMBA_CACHE_DIR=$$(mktemp -d) KERNELS_REQUIRE_NATIVE=1 $(PY) -m pytest $(PYTEST_ARGS); \
	  rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no test: failing"; fi; exit $$rc

fuzz: setup  ## 100,000 malformed messages among valid traffic, and a flood at 10x the valid rate over 1,000 paced vehicles
	n=$${FUZZ_MESSAGES:-100000}; v=$${FLOOD_VEHICLES:-1000}; \
	  ZHICHAO_FUZZ_MESSAGES=$$n ZHICHAO_FLOOD_VEHICLES=$$v KERNELS_REQUIRE_NATIVE=1 \
	  $(PY) -m pytest -p no:cacheprovider -s --timeout=$$((900 + n / 50 + v)) \
	  tests/integration/test_fuzz_stream.py tests/integration/test_flood_latency.py

crash: setup  ## 5 SIGKILLs of the worker over 20,000 passages: nothing lost, nothing doubled
	k=$${CRASH_KILLS:-5}; v=$${CRASH_VEHICLES:-20000}; \
	  ZHICHAO_CRASH_KILLS=$$k ZHICHAO_CRASH_VEHICLES=$$v KERNELS_REQUIRE_NATIVE=1 $(PY) -m pytest \
	  -p no:cacheprovider --timeout=$$((600 + 120 * k + v / 20)) -s tests/integration/test_worker_restart.py

bench: setup  ## pytest-benchmark suite; BENCH=kernels|pipeline|cases|flood for one part
	$(PY) -m bench.run --which $(BENCH)

lint: $(STAMP)  ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

annotate: $(STAMP)  ## Cython annotation HTML for the plate kernel
	$(VENV)/bin/cython -a kernels/_plates.pyx

clean:
	rm -rf build $(VENV) *.egg-info kernels/*.so kernels/*.c kernels/*.html
