# Everything installs itself: apt packages, a venv from the system python (python3-lxc
# lives there), and this package. Every target is idempotent.
VENV        := .venv
PY          := $(VENV)/bin/python
APT_PKGS    := lxc lxc-dev python3-lxc python3-venv busybox-static chromium debootstrap \
               meson ninja-build pkg-config gcc libc6-dev libcap-dev libseccomp-dev
# (lxc-dev and gcc: the fork server that starts VEs is compiled against liblxc's header;
# the second line: `lxcexp build-lxc` builds LXC from source, and the tests build a second LXC)
VE_COUNT    ?= 100
RUN_ARGS    ?= --ve-ping-interval=0.5
TEST_ARGS   ?=
# make test-hosts: the VM matrix (docs/hosts.md); HOSTS_ARGS e.g. --release trixie, -k EXPR.
HOSTS_PKGS  := qemu-system-x86 qemu-utils socat openssh-client
HOSTS_ARGS  ?=

.PHONY: run test test-hosts deps venv lint clean-exp

run: venv
	$(VENV)/bin/pytest --ve-count=$(VE_COUNT) $(RUN_ARGS)

test: venv
	$(VENV)/bin/ruff check pytest_lxcexp tests
	$(VENV)/bin/pytest tests $(TEST_ARGS)

# Debian 12 and 13 VMs (cgroup v2, systemd, AppArmor) booted under qemu, the README's install
# and a subset of the integration tests in each; results in build/test-hosts/.
test-hosts: venv
	@missing=""; for p in $(HOSTS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(PY) -m tests.hosts.run $(HOSTS_ARGS)

deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@# --ve-unprivileged maps VEs onto root's subordinate ids: give root a range if it has none.
	@for f in /etc/subuid /etc/subgid; do \
		grep -qE '^(root|0):' $$f 2>/dev/null || { echo "adding root:1000000:65536 to $$f"; echo root:1000000:65536 >> $$f; }; \
	done

$(VENV)/.installed: pyproject.toml | deps
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check pytest_lxcexp tests

# Takes down the default experiment root by hand (e.g. after a crash).
clean-exp: venv
	$(VENV)/bin/lxcexp takedown --root /exp
