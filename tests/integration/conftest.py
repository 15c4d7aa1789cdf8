"""Integration tests: root and real LXC. They never skip: if LXC cannot run here, they fail."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
from integration_helpers import Names, leftovers_of

from pytest_lxcexp.engine import takedown

_serial = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def _require_root_and_lxc() -> None:
    """Fail loudly (never skip) when this machine cannot run the integration tests."""
    assert os.geteuid() == 0, "integration tests need root: run `make test` as root"
    import lxc  # noqa: F401 - python3-lxc must be importable

    assert subprocess.run(["lxc-ls", "--version"], capture_output=True).returncode == 0, "lxc is not installed"


def _new_names() -> Names:
    serial = next(_serial)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    tag = f"{os.getpid() % 1000}-{worker}-{serial}"
    # Distinct per process too: two test runs on one host must not claim the same subnet.
    subnet = f"10.{220 + (os.getpid() + int(worker)) % 10}.{(os.getpid() // 10 + serial) % 250}.0/24"
    return Names(root=f"/tmp/lxcexp-it-{tag}", bridge=f"veit{os.getpid() % 1000}x{serial}", subnet=subnet)


@pytest.fixture
def names() -> Names:
    return _new_names()


@pytest.fixture
def clean_host(names: Names):
    """Hand the test its names; afterwards assert nothing is left, then clean up regardless."""
    yield names
    left = leftovers_of(names)
    takedown.takedown(names.root, names.tag, names.bridge)
    assert not left, f"left behind: {left}"


@pytest.fixture
def second_host():
    """Names of a second experiment for a test that runs two at once; checked afterwards like clean_host."""
    names = _new_names()
    yield names
    left = leftovers_of(names)
    takedown.takedown(names.root, names.tag, names.bridge)
    assert not left, f"left behind: {left}"


@pytest.fixture
def leftovers():
    """leftovers(names) -> what of that experiment is still on the host."""
    return leftovers_of


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_lxcexp.cli", *args], capture_output=True, text=True)


@pytest.fixture
def cli():
    """cli(*args) runs `lxcexp ARGS` in a subprocess."""
    return run_cli
