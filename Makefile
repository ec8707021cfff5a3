# posd: `make run` starts the demo lane, `make test` runs the tests.
# Both set themselves up (Debian packages when missing, a venv, posd itself).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test test-all soak bench clean

setup:
	@scripts/bootstrap

run: setup
	$(PY) -m posd demo --config config/demo.toml --seed config/demo-seed.json

test: setup
	$(PY) -m pytest

# Everything, including the long soak and fault runs.
test-all: setup
	$(PY) -m pytest -m ''

# Includes the crash soak: 10,000 sales, 100 kills; its figures go to bench/soak-report.json.
soak: setup
	POSD_SOAK_REPORT=bench/soak-report.json $(PY) -m pytest -m slow

bench: setup
	$(PY) -m bench.run --out bench/report.json
	$(PY) -m bench.camera --out bench/camera.json
	$(PY) -m bench.sync --out bench/sync-report.json

clean:
	rm -rf var/ .pytest_cache bench/report.json bench/sync-report.json bench/soak-report.json
