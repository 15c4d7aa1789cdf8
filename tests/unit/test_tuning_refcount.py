"""--ve-tune-host from several roots at once: raised by the first, restored by the last."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lxcexp.engine import tuning
from pytest_lxcexp.engine.config import build_config
from pytest_lxcexp.engine.host import Requirement
from pytest_lxcexp.engine.storage import Layout

SYSCTL = "/proc/sys/net/core/netdev_max_backlog"


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, int]:
    """A pretend host: its sysctls in a dict, its registry in tmp_path."""
    values = {SYSCTL: 1000}
    monkeypatch.setattr(tuning, "_read_sysctl", lambda path: values[path])
    monkeypatch.setattr(tuning, "_write", lambda path, value: values.__setitem__(path, value))
    return values


def _config(tmp_path: Path, name: str):
    root = tmp_path / name
    Path(Layout(str(root)).state_dir).mkdir(parents=True)
    return build_config(root=str(root), tune_host=True)


def test_the_last_root_to_restore_puts_the_original_back(host, tmp_path, monkeypatch) -> None:
    state = str(tmp_path / "run-lxcexp")
    needs = {"a": 2000, "b": 3000}
    a, b = _config(tmp_path, "a"), _config(tmp_path, "b")

    def requirements(config):
        need = needs[Path(config.root).name]
        return [Requirement("backlog", need, host[SYSCTL], sysctl=SYSCTL)]

    monkeypatch.setattr(tuning, "requirements", requirements)
    assert tuning.tune(a, state) == {SYSCTL: (1000, 2000)}
    assert tuning.tune(b, state) == {SYSCTL: (2000, 3000)}
    assert host[SYSCTL] == 3000
    assert tuning.restore(a.root, state) == {}  # b still needs it
    assert host[SYSCTL] == 3000
    assert tuning.restore(b.root, state) == {SYSCTL: 1000}  # the host's own value, not a's "old" 2000
    assert host[SYSCTL] == 1000
    assert tuning.restore(b.root, state) == {}  # repeated (lxcexp takedown after the run): nothing
