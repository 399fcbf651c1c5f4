# The commands the README shows. Every target uses the project's own virtualenv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REAL_DATA ?= ../shared/data/property-friends

# checkov (the Helm chart's security scan, tests/deploy/) lives in a venv of its own: it pins
# old versions of libraries the project needs newer (packaging<24, boto3, networkx<2.7), so it
# cannot share .venv. tests/deploy/ run it from here. Defined before `install`, whose
# prerequisites make expands as it reads them.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

.PHONY: install system-packages train test test-fast test-lowest lint security stack bench bench-quality drift-demo chart-check clean

install: $(BIN)/valuation $(CHECKOV) system-packages

# Debian packages the stack and its tests run: nginx balances `make stack PROXIES=2`; promtool
# (package prometheus) checks deploy/prometheus/'s alert rules; chromium runs the web pages'
# browser tests (Playwright drives it; it cannot download a browser here); podman, runc and
# debootstrap build and run the image (scripts/podman_image.py, tests/docker/). The image is
# built as root with host networking, so rootless podman's uidmap and slirp4netns are not needed.
# Installed when missing and we are root (CI); otherwise the command to run is printed.
system-packages:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y nginx; \
		else echo "make stack PROXIES=2 and its tests need nginx: run  sudo apt-get install -y nginx" >&2; \
		fi; }
	@command -v promtool >/dev/null || [ -x /usr/bin/promtool ] || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y prometheus; \
		else echo "the alert-rule tests need promtool: run  sudo apt-get install -y prometheus" >&2; \
		fi; }
	@[ -x /usr/bin/chromium ] || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
		else echo "the browser tests (tests/serving/ui) need chromium: run  sudo apt-get install -y chromium" >&2; \
		fi; }
	@{ command -v podman && { command -v runc || [ -x /usr/sbin/runc ]; } \
		&& { command -v debootstrap || [ -x /usr/sbin/debootstrap ]; }; } >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y podman runc debootstrap; \
		else echo "the image build (scripts/podman_image.py) needs podman: run  sudo apt-get install -y podman runc debootstrap" >&2; \
		fi; }

$(BIN)/valuation: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,spark]'
	@touch $@

$(CHECKOV): | $(BIN)/valuation
	$(BIN)/uv venv --quiet --python $(PYTHON) $(CHECKOV_VENV)
	$(BIN)/uv pip install --quiet --python $(CHECKOV_VENV)/bin/python 'checkov>=3.2.0,<4'
	@touch $@

# Runs the MLflow Project's main entry point. Uses data/train.csv + data/test.csv when present;
# otherwise says so and trains on the synthetic sample (data=sample), explicitly.
train: install
	@if [ -f data/train.csv ] && [ -f data/test.csv ]; then \
		echo "make train: data=csv (data/train.csv, data/test.csv)"; \
		$(BIN)/mlflow run . --env-manager local $(if $(MODEL),-P model=$(MODEL)) -P overrides="$(OVERRIDES)"; \
	else \
		echo "make train: data/train.csv not found -> training on the synthetic sample (data=sample)"; \
		$(BIN)/mlflow run . --env-manager local $(if $(MODEL),-P model=$(MODEL)) -P overrides="data=sample $(OVERRIDES)"; \
	fi
	@$(BIN)/valuation status || true
	@echo "Browse runs and the registry with: $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db"

test: install security
	$(BIN)/ruff check .
	$(BIN)/pytest --durations=30  # the slowest set-ups and tests: where CI's time goes

# Static security lint and known-vulnerability audit; every finding is fixed or justified in
# SECURITY.md (skipped bandit tests are in pyproject.toml [tool.bandit]).
security: install
	$(BIN)/bandit -q -r valuation serving steps -c pyproject.toml
	$(BIN)/python scripts/dependency_audit.py

test-fast: install
	$(BIN)/pytest -m "not slow"

# Proves pyproject.toml's lower bounds: a separate venv with every direct dependency at the lowest
# version allowed (their own dependencies at the newest that fit), then the fast suite in it, and
# the one slow test that serves a logged model with `mlflow models serve` (the fast suite starts
# no model server, and MLflow's server is what limits MLflow's bound).
LOWEST := .venv-lowest
test-lowest: install
	rm -rf $(LOWEST)
	$(BIN)/uv venv --quiet --python $(PYTHON) $(LOWEST)
	$(BIN)/uv pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct -e '.[test,spark]'
	VALUATION_LOWEST_DIRECT=1 $(LOWEST)/bin/pytest -m "not slow"
	$(LOWEST)/bin/pytest -m slow -k model_server_answers_bad_rows

lint: install
	$(BIN)/ruff check .

# PROXIES=2: two proxy replicas behind nginx on the proxy's port.
stack: install
	$(BIN)/python -m serving.devstack $(if $(PROXIES),--proxies $(PROXIES))

# wrk (the load generator, a Debian package) is installed when missing and we are root; otherwise
# the command to run is printed. SOAK_S=600 lengthens the soak part (default 300 s);
# ONLY=throughput,cache,soak runs those parts only (bench/run.py's PARTS), then the report.
bench: install
	@command -v wrk >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y wrk; \
		else echo "make bench needs wrk: run  sudo apt-get install -y wrk  (macOS: brew install wrk)" >&2; \
			exit 1; fi; }
	$(BIN)/python -m bench.run --data-dir $(REAL_DATA) $(if $(SOAK_S),--soak-s $(SOAK_S)) \
		$(if $(ONLY),--only $(ONLY))

bench-quality: install
	$(BIN)/python -m bench.quality --data-dir $(REAL_DATA)

# Issue 11's proof: a market shift replayed through the stack, caught by the monitoring job,
# retrained automatically; a no-shift control beside it (bench/drift_demo.py). Writes
# bench/results/drift_demo.md, .json and the timeline PNG. QUICK=1: a smoke run.
drift-demo: install
	$(BIN)/python -m bench.drift_demo --data-dir $(REAL_DATA) $(if $(QUICK),--quick)

# The Helm chart's offline checks: render (several values files), helm lint --strict, the
# manifests against Kubernetes 1.30's schemas, checkov. Also part of `make test`.
chart-check: install
	$(BIN)/pytest -q tests/deploy

clean:
	rm -rf .stack outputs multirun .pytest_cache .ruff_cache
