# posd: `make run` starts the demo lane, `make test` runs the tests.
# Both set themselves up (Debian packages when missing, a venv, posd itself).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test test-faults test-all soak crash-soak bench bench-smoke deb lock test-install clean

setup:
	@scripts/bootstrap

run: setup
	$(PY) -m posd demo --config config/demo.toml --seed config/demo-seed.json --second-lane config/demo-lane2.toml

test: setup
	$(PY) -m pytest --durations=25

# The fault-injection and kill runs, and the full-size model and evidence runs, kept out of `make test` (it
# stays under 15 minutes): CI runs them after it.
test-faults: setup
	$(PY) -m pytest -m "fault or long" -p no:cacheprovider

# Everything, including the long soak and fault runs.
test-all: setup
	$(PY) -m pytest -m ''

# Includes the crash soak: 10,000 sales, 100 kills; its figures go to bench/soak-report.json.
soak: setup
	POSD_SOAK_REPORT=bench/soak-report.json $(PY) -m pytest -m 'slow and not install'

# The kill -9 soak alone (10,000 sales, 100 kills; a few minutes): CI runs it after `make test`.
crash-soak: setup
	POSD_SOAK_REPORT=bench/soak-report.json $(PY) -m pytest -m 'slow and not install' -k crash_soak -p no:cacheprovider

# Every bench module at a tiny size: it still runs and writes its report (no figure judged).
bench-smoke: setup
	$(PY) -m pytest -m slow tests/test_bench.py -p no:cacheprovider

bench: setup
	$(PY) -m bench.run --out bench/report.json
	$(PY) -m bench.camera --out bench/camera.json
	$(PY) -m bench.sync --out bench/sync-report.json
	$(PY) -m bench.central --out bench/central.json
	$(PY) -m bench.fleet --out bench/fleet.json --central-report bench/central.json
	$(PY) -m bench.burn --out bench/burn-report.json
	$(PY) -m bench.observe --out bench/observe.json
	$(PY) -m bench.rules --out bench/rules.json

# The Debian package: dist/posd_<version>_<arch>.deb (docs/install.md).
deb:
	scripts/build-deb

# Pin the runtime dependencies the package ships to the versions the tests run with.
lock: setup
	$(PY) -m pip install -q uv
	$(PY) -m pip freeze --exclude-editable > $(VENV)/freeze.txt
	$(VENV)/bin/uv pip compile -q pyproject.toml --generate-hashes --python-version 3.11 \
		--constraint $(VENV)/freeze.txt --custom-compile-command 'make lock' -o packaging/requirements.txt

# Builds the package and installs it in a clean Debian root booted with systemd (slow).
test-install: deb
	scripts/bootstrap install-test
	POSD_DEB=$$(ls -t dist/posd_*.deb | head -n 1) $(PY) -m pytest -m install -p no:cacheprovider tests/test_install.py

clean:
	rm -rf var/ .pytest_cache bench/report.json bench/sync-report.json bench/soak-report.json bench/central.json bench/fleet.json bench/observe.json bench/burn-report.json bench/rules.json build/deb dist/
