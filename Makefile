# NØMADE: `make demo` runs the main job on the embedded lab cluster, `make test` runs every test.
# Both do all set-up themselves on a fresh Debian/Ubuntu machine (as root): system packages, the virtual
# environment, the lab stack (munge, MariaDB, slurmdbd, slurmctld, several slurmd, Prometheus, exporter).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LAB    := bash deploy/lab/lab.sh
# torch is pinned first: the CPU build lies on local disk; a looser pin would fetch a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: all venv system lint unit integration test demo demo-stop lab-start lab-stop bench docs clean

all: test

system:
	$(LAB) install

$(VENV)/.stamp: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { [ "$$(id -u)" -eq 0 ] || { echo "$(PYTHON) not found: install Python 3.11+ with venv (Debian/Ubuntu: sudo apt-get install python3 python3-venv python3-pip)" >&2; exit 1; }; apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv python3-pip; }
	@$(PYTHON) -m venv $(VENV) || { [ "$$(id -u)" -eq 0 ] || { echo "$(PYTHON) -m venv failed: install the venv module (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2; exit 1; }; DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[ml,dev,build]'
	touch $@

venv: $(VENV)/.stamp

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

unit: venv
	$(VENV)/bin/pytest -q tests/unit

docs: venv
	$(PY) -m nomade.exporter.catalog --markdown > docs/metrics.md

# The lab stack is always stopped again, whether the tests pass or not.
integration: venv system
	$(LAB) reset
	$(LAB) start
	$(LAB) workload
	NOMADE_LAB=1 $(VENV)/bin/pytest -q tests/integration; rc=$$?; $(LAB) stop; exit $$rc

test: venv system lint
	$(VENV)/bin/pytest -q tests/unit
	$(MAKE) --no-print-directory integration

# `make demo`: the lab cluster where the machine allows it (root on Debian/Ubuntu), else, or with SIMULATE=1, the
# simulated cluster (deploy/sim/sim.sh: backfilled history, any user, ports 9190/9193/9196/9197).
SIMULATE ?= 0
SIM      := bash deploy/sim/sim.sh

demo:
	@if [ "$(SIMULATE)" != 1 ] && [ "$$(id -u)" -eq 0 ] && grep -qiE '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release 2>/dev/null; then \
		$(MAKE) --no-print-directory venv system && \
		$(LAB) start && $(LAB) workload && \
		echo "waiting 15 s for the last outcomes to reach Prometheus (exporter cache 4 s, sacct poll 5 s, scrape 5 s)" && \
		sleep 15 && $(VENV)/bin/nomade status && echo && \
		echo "Prometheus: http://127.0.0.1:9090   Alertmanager: http://127.0.0.1:9093   exporter: http://127.0.0.1:9866/metrics   analytics: http://127.0.0.1:9867/metrics" && \
		echo "Stop everything with: bash deploy/lab/lab.sh stop"; \
	else \
		$(MAKE) --no-print-directory venv && $(SIM) start && echo && \
		$(VENV)/bin/nomade status --prometheus "http://127.0.0.1:$${NOMADE_SIM_PROM_PORT:-9190}" && echo && \
		echo "Prometheus: http://127.0.0.1:$${NOMADE_SIM_PROM_PORT:-9190}   Alertmanager: http://127.0.0.1:$${NOMADE_SIM_AM_PORT:-9193}   exporter: http://127.0.0.1:$${NOMADE_SIM_EXPORTER_PORT:-9196}/metrics   analytics: http://127.0.0.1:$${NOMADE_SIM_ANALYTICS_PORT:-9197}/metrics" && \
		echo "Stop everything with: make demo-stop (or bash deploy/sim/sim.sh stop)"; \
	fi

# Stops the simulated-cluster demo (the lab demo stops with: bash deploy/lab/lab.sh stop).
demo-stop:
	$(SIM) stop

lab-start: venv system
	$(LAB) start

lab-stop:
	$(LAB) stop

bench: venv
	$(PY) bench/bench_exporter.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
