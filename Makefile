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

# Debian packages the tests use, so that `make test` as root passes on a bare minimal Debian (debootstrap
# --variant=minbase with python3, make and git; .ci/fresh-debian checks exactly that). tests/test_make.py
# checks that every command the tests run comes from one of them. What each is for:
#   mosquitto    the real broker, and mosquitto_passwd (test_tls)
#   openssl      test_tls makes its CA and server certificate with it
#   chromium     the kiosk's browser tests (Playwright drives /usr/bin/chromium; it cannot download its own)
#   libatomic1   Playwright's bundled node links it
#   libpcap0.8   scapy compiles netmon's capture filters with it
#   iproute2     `ip`: the live netmon tests' network namespace and veth pair (netmon/lab.py)
#   debootstrap  builds the Debian root the provisioning tests apply the playbook to (then chroot and mount,
#                which every Debian has)
TEST_DEBS := mosquitto openssl chromium libatomic1 libpcap0.8 iproute2 debootstrap

# Checked by package name (dpkg-query), not by command, so a library or a half-removed package counts too.
# Installed in one apt-get call when root; otherwise the exact command to run is printed.
test-system-deps:
	@if ! command -v dpkg-query >/dev/null; then \
	  echo ">> not a Debian system: make sure the equivalents of these Debian packages are installed: $(TEST_DEBS)"; \
	  exit 0; fi; \
	missing=""; \
	for deb in $(TEST_DEBS); do \
	  dpkg-query -W -f='$${db:Status-Abbrev}' $$deb 2>/dev/null | grep -q '^ii' || missing="$$missing $$deb"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ -n "$(IS_ROOT)" ] && command -v apt-get >/dev/null; then \
	    echo ">> installing$$missing (Debian packages) for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	  else echo "the tests need these Debian packages, not installed here:$$missing" >&2; \
	    echo "run 'sudo apt-get install$$missing' (or make test as root) and try again" >&2; exit 1; fi; \
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
