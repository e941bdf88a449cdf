# Pixelcast: `make run` serves, `make test` tests. Both create and fill .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pixelcast-installed
ARGS ?=

.PHONY: run test test-fast lint bench report train eval simulate install browser clean cluster-demo

run: $(STAMP)
	$(VENV)/bin/pixelcast serve $(ARGS)

test: lint browser
	$(PY) -m pytest --durations=15 $(ARGS)

# the unit tier: everything not marked slow (no server process, browser, cluster or shipped model)
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(ARGS)

# ruff with the rules pyproject.toml selects, and mypy (strict on streamer/ and personalization/);
# part of `make test`
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Speed, measured side by side and written as JSON under bench-results/ (see README, Performance).
bench: $(STAMP)
	$(VENV)/bin/pixelcast bench engine --seconds 20 --steps 1 --batches 1 4 8 --json bench-results/engine.json
	$(VENV)/bin/pixelcast bench stream --viewers 1 --seconds 30 --json bench-results/stream-1.json
	$(VENV)/bin/pixelcast bench stream --viewers 4 --seconds 30 --json bench-results/stream-4.json
	$(VENV)/bin/pixelcast bench stream --viewers 10 --seconds 30 --json bench-results/stream-10.json
	$(VENV)/bin/pixelcast bench redis --writers 64 --events 40000 --json bench-results/redis.json
	$(VENV)/bin/pixelcast bench grounding --json bench-results/grounding.json
	$(VENV)/bin/pixelcast bench steer-readers --json bench-results/steer-readers.json
	$(VENV)/bin/pixelcast bench stream --viewers 10 --seconds 20 --workers 1 --json bench-results/stream-nginx-1.json
	$(VENV)/bin/pixelcast bench stream --viewers 10 --seconds 20 --workers 2 --json bench-results/stream-nginx-2.json
	$(VENV)/bin/pixelcast bench churn --cycles 200 --json bench-results/churn-200.json

# docs/performance.md, generated from the latest reports in bench-results/*.json.
report: $(STAMP)
	$(VENV)/bin/pixelcast report $(ARGS)

train: $(STAMP)
	$(VENV)/bin/pixelcast train $(ARGS)

eval: $(STAMP)
	$(VENV)/bin/pixelcast eval model --json bench-results/eval-model.json $(ARGS)

simulate: $(STAMP)
	$(VENV)/bin/pixelcast simulate --viewers 300 --segments 50 --json bench-results/simulate.json \
		--plot bench-results/simulate.png

install: $(STAMP)

# nginx, two workers and a three-master Redis Cluster on loopback (deploy/README.md); Ctrl-C stops them.
cluster-demo: $(STAMP) browser
	$(VENV)/bin/pixelcast cluster-demo $(ARGS)

# torch first: on a CPU machine the exact CPU wheel; with an NVIDIA GPU, pip picks the user's own build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install "torch>=2.4"; \
	else $(PY) -m pip install torch==2.13.0; fi
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

# Browser tests drive Debian's Chromium (Playwright's own browser download is not used); the scale-out
# tests run Debian's nginx and coturn. Whatever is missing is installed with apt-get when possible.
SYSTEM_PACKAGES := chromium:/usr/bin/chromium nginx:/usr/sbin/nginx coturn:/usr/bin/turnserver
browser:
	@missing=""; for entry in $(SYSTEM_PACKAGES); do \
		[ -x "$${entry#*:}" ] || missing="$$missing $${entry%%:*}"; done; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages for the browser and scale-out tests:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "NOTE:$$missing missing and apt-get is not usable: the tests that need them will be skipped"; fi

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts bench-results
