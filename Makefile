# ha-web developer entry points. Every target sets up what it needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= 10
DEBIAN_PACKAGES := python3-venv nginx-light nftables iproute2 curl shellcheck cloud-init \
	build-essential pkg-config libssl-dev libnl-3-dev libnl-genl-3-dev libsystemd-dev dpkg-dev util-linux \
	systemd-container debootstrap openssl

.PHONY: setup system-packages test unit lint agent lab-image lab lab-up lab-down bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Debian/Ubuntu packages the tests and the lab use (needs root).
system-packages:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEBIAN_PACKAGES)

# Everything: unit tests, rendered-config checks, the real keepalived build, and the lab (root),
# whose droplets boot the cached image (built first if missing).
test: lab-image
	$(PY) -m pytest

# Fast unit tests only, no root needed.
unit: setup
	$(PY) -m pytest -m "not lab"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .

# The droplet agent as one gzipped zip (cloudinit/files/ha-web-agent.pyz.gz), from cloudinit/agent/.
# Run after changing the agent and commit the archive: the renderer refuses a stale one.
agent: setup
	$(PY) -m cloudinit.agent_archive

# The lab droplets' Debian image is built once (about 80 s, needs the Debian mirror) and cached
# in /var/cache/ha-web-lab; later runs say where it is and how long its build took.
lab-image: system-packages setup
	$(PY) -m lab.rootfs

lab: lab-image
	$(PY) -m lab drill

lab-up: lab-image
	$(PY) -m lab up

lab-down: setup
	$(PY) -m lab down

# Failover timings: every fault RUNS times (make bench RUNS=1 for a quick check), into bench-report/.
bench: lab-image
	$(PY) -m lab bench --runs $(RUNS)

clean:
	rm -rf $(VENV) .cache lab-report bench-report .pytest_cache .mypy_cache .ruff_cache
