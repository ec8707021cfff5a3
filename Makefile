# posd: `make run` starts the demo lane, `make test` runs the tests.
# Both set themselves up (Debian packages when missing, a venv, posd itself).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test test-all soak bench lock clean

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

# Pin the runtime dependencies the package ships to the versions the tests run with.
lock: setup
	$(PY) -m pip install -q uv
	$(PY) -m pip freeze --exclude-editable > $(VENV)/freeze.txt
	$(VENV)/bin/uv pip compile -q pyproject.toml --generate-hashes --python-version 3.11 \
		--constraint $(VENV)/freeze.txt --custom-compile-command 'make lock' -o packaging/requirements.txt

clean:
	rm -rf var/ .pytest_cache bench/report.json bench/sync-report.json bench/soak-report.json
