# SiteWarden: `make demo` runs the whole appliance locally, `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: demo test lint schemas system-deps test-system-deps model clean

# Debian's python3 needs python3-venv for `-m venv`; install it when we can, say how when we cannot.
$(VENV)/bin/python:
	@if ! $(PYTHON) -m venv --help >/dev/null 2>&1 || ! $(PYTHON) -c 'import ensurepip' >/dev/null 2>&1; then \
	  if [ -n "$(IS_ROOT)" ] && command -v apt-get >/dev/null; then \
	    echo ">> installing python3-venv (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	  else echo "python3 cannot make a venv: run 'sudo apt-get install python3-venv' and try again" >&2; exit 1; fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-demo: $(VENV)/bin/python pyproject.toml
	@echo ">> installing SiteWarden into $(VENV)"
	$(PY) -m pip install -q -e '.[demo]'
	@touch $@

$(VENV)/.installed-dev: $(VENV)/bin/python pyproject.toml
	@echo ">> installing SiteWarden and its test tools into $(VENV)"
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# The default person-detection model, built once per machine into ~/.cache/sitewarden/models (the vision
# service and its tests load it from there); a second run only checks its sha256.
model:
	@echo ">> person-detection model: sitewarden models build pedestrian-ssdlite (first time on this machine: a"
	@echo "   throwaway virtualenv with tensorflow-cpu converts the graph, 1-3 min; deleted after)"
	$(VENV)/bin/sitewarden models build pedestrian-ssdlite

demo: $(VENV)/.installed-demo
	@$(MAKE) --no-print-directory model
	$(VENV)/bin/sitewarden demo $(if $(DURATION),--duration $(DURATION))

# Debian packages the tests use: a real mosquitto broker, and Chromium for the kiosk's browser tests
# (Playwright drives /usr/bin/chromium; it cannot download its own browser here), and libpcap0.8, which
# scapy needs to compile netmon's capture filters, and debootstrap, which builds the Debian root the
# provisioning test applies the Ansible playbook to. Installed when root.
test-system-deps:
	@missing=""; \
	if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then missing="$$missing mosquitto openssl"; fi; \
	if [ ! -x /usr/bin/chromium ]; then missing="$$missing chromium"; fi; \
	if ! ls /usr/lib/*/libpcap.so.0.8 >/dev/null 2>&1; then missing="$$missing libpcap0.8"; fi; \
	if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then missing="$$missing debootstrap"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ -n "$(IS_ROOT)" ] && command -v apt-get >/dev/null; then \
	    echo ">> installing$$missing (Debian packages) for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "the tests need$$missing: run 'sudo apt-get install$$missing' (or make test as root)" >&2; exit 1; fi; \
	fi

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

test: $(VENV)/.installed-dev test-system-deps lint
	@$(MAKE) --no-print-directory model
	$(PY) -m pytest $(PYTEST_ARGS)

schemas: $(VENV)/.installed-dev
	$(VENV)/bin/sitewarden schema --out docs/schemas

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info
