# Set-up and everyday targets.  Every target installs what it needs, Debian
# packages included (as root), so on a fresh machine `make test` or `make demo`
# can be the first command.  Installing is idempotent: once everything is there,
# the checks cost a few dpkg queries and no apt-get call.
PY       ?= python3
VENV     := .venv
VPY      := $(VENV)/bin/python

# Debian packages, each word one package; "a/b" is satisfied by either name and
# installs the first one the archive has (trixie renamed libaio1 to libaio1t64).
# The venv needs python3-venv (ensurepip) unless $(PY) already has it; the device
# extra (python-functionfs, python-libaio) loads libaio.so.1 through ctypes, and
# so do the unit tests of the FunctionFS transport.
VENV_DEBS := $(if $(shell $(PY) -c 'import ensurepip, venv' 2>/dev/null && echo ok),,python3 python3-venv)
AIO_DEBS  := libaio1t64/libaio1
# Real clients the unit tests run: `age` (encrypted backups), `obexftp` (OBEX server).
TOOL_DEBS := age obexftp
# The VM harness, the real initiators (FUSE ones too) and the reference responder of `make bench`.
VM_DEBS   := qemu-system-x86 busybox-static cpio kmod mtp-tools gphoto2 usbutils umtp-responder \
             go-mtpfs jmtpfs fuse/fuse3

.PHONY: install debs apt test unit lint e2e e2e-client-races e2e-long e2e-large bench demo dist clean fuzz soak

# $(call ensure_debs,PACKAGES): install those not installed yet; one apt-get
# update, only when something is missing.  Not Debian: say what is needed.
define ensure_debs
@missing=""; \
for alts in $(1); do \
  found=""; \
  for p in $$(echo "$$alts" | tr '/' ' '); do \
    if dpkg-query -W -f='$${db:Status-Status}' "$$p" 2>/dev/null | grep -qx installed; then \
      found=1; fi; \
  done; \
  [ -n "$$found" ] || missing="$$missing $$alts"; \
done; \
if [ -n "$$missing" ] && ! command -v apt-get >/dev/null; then \
  echo "make: not a Debian system; install the equivalent of:$$missing" >&2; \
elif [ -n "$$missing" ]; then \
  echo "make: installing Debian packages:$$missing"; \
  apt-get update -q || exit 1; \
  pkgs=""; \
  for alts in $$missing; do \
    pick=""; \
    for p in $$(echo "$$alts" | tr '/' ' '); do \
      if [ -z "$$pick" ] && apt-cache show "$$p" >/dev/null 2>&1; then pick="$$p"; fi; \
    done; \
    pkgs="$$pkgs $${pick:-$${alts##*/}}"; \
  done; \
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$pkgs; \
fi
endef

# What the venv and the unit tests need from the system.
debs:
	$(call ensure_debs,$(VENV_DEBS) $(AIO_DEBS) $(TOOL_DEBS))

$(VENV)/.installed: pyproject.toml | debs
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[device,host,test]'
	touch $@

install: debs $(VENV)/.installed

# System packages for the VM harness and the real initiators (root, Debian).
apt: debs
	$(call ensure_debs,$(VM_DEBS))

# A transport module that cannot load (no libaio) fails its own tests, not the run.
unit: install
	$(VPY) -m pytest -q --continue-on-collection-errors

lint: install
	$(VPY) -m ruff check .
	$(VPY) -m mypy mtp_responder data_providers engine gadget_config mtp_backup obex_backup_server
	$(VENV)/bin/lint-imports

e2e: install apt
	$(VPY) -m tests.e2e.harness

# Tests that a client's own race fails at times (go-mtpfs copying a tree in).
e2e-client-races: install apt
	$(VPY) -m tests.e2e.harness --client-races

# Minutes each in the VM: the responder, the engine and an app killed at every
# point of a restore, resumed and encrypted backups, the CDC OBEX gadget.
e2e-long: install apt
	$(VPY) -m tests.e2e.harness --long

# Objects of 4 GiB and more and a large backup: many minutes in the VM.
e2e-large: install apt
	$(VPY) -m tests.e2e.harness --large

test: lint unit e2e

bench: install apt
	@for b in bench/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

# Fuzzing with a large budget (inputs per target; the normal unit run uses a
# small fixed-seed one) and a bounded soak; neither is part of `make test`.
FUZZ_EXAMPLES ?= 20000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VPY) -m pytest -p no:cacheprovider --timeout=0 -q tests/fuzz tests/obex/test_fuzz_packets.py tests/obex_server/test_fuzz_server.py

SOAK_SECONDS ?= 1200
soak: install
	SOAK_SECONDS=$(SOAK_SECONDS) $(VPY) bench/soak.py

demo: install apt
	$(VPY) -m tests.e2e.harness --demo

# The wheel and the sdist a board (`pip install 'dist/<wheel>[device]'`) or a PC
# (`[host]`) installs; built in an isolated environment from the tree as it is.
dist: install
	rm -rf dist
	$(VPY) -m build --outdir dist .

clean:
	rm -rf $(VENV) .cache build dist *.egg-info
