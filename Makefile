# Set-up and everyday targets.  `make install` is idempotent; every other
# target depends on it, so a fresh machine needs only `make test` / `make demo`.
PY       ?= python3
VENV     := .venv
VPY      := $(VENV)/bin/python
APT_PKGS := qemu-system-x86 busybox-static cpio kmod mtp-tools gphoto2 usbutils libaio1 umtp-responder

.PHONY: install apt test unit lint e2e bench demo clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[device,host,test]'
	touch $@

install: $(VENV)/.installed

# System packages for the VM harness and the real initiators (root, Debian).
apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi

unit: install
	$(VPY) -m pytest -q

lint: install
	$(VPY) -m ruff check .
	$(VPY) -m mypy mtp_responder data_providers engine gadget_config mtp_backup
	$(VENV)/bin/lint-imports

e2e: install apt
	$(VPY) -m tests.e2e.harness

test: lint unit e2e

bench: install apt
	@for b in bench/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

demo: install apt
	$(VPY) -m tests.e2e.harness --demo

clean:
	rm -rf $(VENV) .cache build *.egg-info
