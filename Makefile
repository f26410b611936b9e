# Quanzi local stack. `make test ARGS="-k catalog -x"` passes ARGS to pytest.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The one lock of the whole closure (runtime + dev tools), every entry pinned and hash-checked; the images
# install its runtime part (deploy/docker/requirements-runtime.lock). `make lock` writes both.
LOCK := requirements.lock
# What the installed .venv was built from: pip runs again only when the lock changes.
LOCK_SUM = $(shell sha256sum $(LOCK) | cut -d' ' -f1)
# The lock is resolved for the machines the project runs on (Debian 12, CPython 3.11, x86_64) and the images.
UV_PIP_COMPILE = $(VENV)/bin/uv pip compile --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" -q
UV_COMPILE = $(UV_PIP_COMPILE) requirements-dev.txt -o $(LOCK)
# The images' part: the runtime requirements alone, at the lock's versions (checked line for line against it).
RUNTIME_LOCK := deploy/docker/requirements-runtime.lock
UV_COMPILE_RUNTIME = $(UV_PIP_COMPILE) requirements-runtime.txt -c $(LOCK) -o $(RUNTIME_LOCK)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
ARGS ?=
ASYNCAPI_SCHEMA := $(VENV)/share/asyncapi/asyncapi-3.0.0.json

# The web app (web/): rebuilt only when its sources or lock changed (stamp = hash of them).
WEB_SRCS = $(shell find web -path web/node_modules -prune -o -path web/dist -prune -o -type f -print 2>/dev/null | sort)
WEB_SUM = $(shell cat /dev/null $(WEB_SRCS) | sha256sum | cut -d' ' -f1)
WEB_STAMP := web/dist/.built

.PHONY: install system-packages web run test bench reconcile stop lock lock-upgrade demo chaos cluster chaos-cluster

install: system-packages $(PY) web
	@# --require-hashes: a wheel whose bytes differ from the lock's (tampered, re-published) fails the install
	@if [ "$$(cat $(STAMP) 2>/dev/null)" != "$(LOCK_SUM)" ]; then \
		echo "pip install --require-hashes -r $(LOCK)"; \
		$(PY) -m pip install --disable-pip-version-check -q --require-hashes -r $(LOCK) \
			&& echo "$(LOCK_SUM)" > $(STAMP); \
	fi
	@# contract tests validate the AsyncAPI document against the official JSON schema (npm @asyncapi/specs)
	@[ -f $(ASYNCAPI_SCHEMA) ] || ! command -v npm >/dev/null || { tmp=$$(mktemp -d) && \
		(cd $$tmp && npm pack -q @asyncapi/specs@6.11.1 >/dev/null && tar xzf asyncapi-specs-6.11.1.tgz) && \
		mkdir -p $(dir $(ASYNCAPI_SCHEMA)) && cp "$$tmp/package/schemas/3.0.0-without-\$$id.json" $(ASYNCAPI_SCHEMA); \
		rm -rf $$tmp; }

# npm ci installs exactly web/package-lock.json; vite builds web/dist, which the gateway serves.
web:
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "Node.js 20 and npm are needed to build the web pages: apt-get install nodejs npm" \
		     "(Debian 12), or Node 20 from nodejs.org; then run make install again." >&2; exit 1; }
	@if [ "$$(cat $(WEB_STAMP) 2>/dev/null)" != "$(WEB_SUM)" ]; then \
		echo "web: npm ci && vite build"; \
		(cd web && npm ci --no-audit --no-fund --loglevel=error && npx vite build --logLevel warn) \
			&& echo "$(WEB_SUM)" > $(WEB_STAMP); \
	fi

# The broker comes from Debian (the database from PyPI, see requirements.txt); python3-venv only if the
# machine's python3 cannot make a venv; prometheus (with promtool) for the deploy tests; chromium and its
# WebDriver for the browser tests (tests/web), and a Chinese font so their screenshots are legible.
system-packages:
	@missing=""; \
	[ -x /usr/sbin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null || missing="rabbitmq-server"; \
	[ -x $(PY) ] || python3 -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	[ -n "$$(fc-list :lang=zh 2>/dev/null)" ] || missing="$$missing fonts-wqy-microhei"; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install $$missing"; \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(PY):
	python3 -m venv $(VENV)

# After editing a requirements*.txt: re-resolve, keeping every pin that still fits (commit the lock files).
lock: $(PY)
	@[ -x $(VENV)/bin/uv ] || $(PY) -m pip install --disable-pip-version-check -q \
		"$$(grep -E '^uv==' requirements-dev.txt)"
	$(UV_COMPILE)
	$(UV_COMPILE_RUNTIME)
	$(PY) deploy/docker/runtime_lock.py

# Deliberate refresh: every package to its newest release the requirements allow. Commit it when the suite passes.
lock-upgrade: $(PY)
	@[ -x $(VENV)/bin/uv ] || $(PY) -m pip install --disable-pip-version-check -q \
		"$$(grep -E '^uv==' requirements-dev.txt)"
	$(UV_COMPILE) --upgrade
	$(UV_COMPILE_RUNTIME)
	$(PY) deploy/docker/runtime_lock.py

run: install
	@exec $(PY) -m tools.run

# pytest's exit code 5 means it collected no tests: a mistyped path or -k must not pass as green.
test: install
	@$(PY) -m pytest $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# wrk (Debian) generates the high-rate GET load from its own process, so it does not take the gateway's CPU.
bench: install
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
	$(PY) -m tools.bench

# A realistic demo through the public API (idempotent): against `make run`'s gateway, or GATEWAY_URL.
demo: install
	$(PY) -m tools.demo

# On this machine the way it runs past one: a 3-node RabbitMQ cluster, a 3-member replica set, two replicas of every
# service (tools/cluster.py). Free ports, data under .stack/cluster started afresh; Ctrl-C stops it.
cluster: install
	@exec $(PY) -m tools.cluster

# Failover under load on the cluster: MongoDB primary and a RabbitMQ node killed with -9, the node back; invariants
# and error windows (tools/chaos_cluster.py, about 5 minutes; --single compares a single-node stack's throughput).
chaos-cluster: install
	$(PY) -m tools.chaos_cluster $(ARGS)

# A stack of its own (free ports), shoppers buying under six faults, invariants checked, a table (CHAOS_SECONDS).
chaos: install
	$(PY) -m tools.chaos

reconcile: install
	$(PY) -m tools.reconcile

stop:
	@if [ -x $(PY) ]; then $(PY) -m tools.run --stop; else echo "No .venv: nothing to stop."; fi
