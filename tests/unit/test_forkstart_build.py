"""engine/forkstart.py: the fork server is compiled once per source and header, or not at all."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pytest_lxcexp.engine import forkstart


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forkstart, "_built", {})


def test_built_once_into_the_cache_and_runs(tmp_path: Path) -> None:
    path = forkstart.build(str(tmp_path))
    assert path is not None and os.path.dirname(path) == str(tmp_path)
    assert os.path.basename(path).startswith("forkstart-") and os.access(path, os.X_OK)
    assert os.listdir(tmp_path) == [os.path.basename(path)]  # no scratch file left
    done = subprocess.run([path, str(tmp_path)], input="not a start\n", capture_output=True, text=True, timeout=10)
    assert done.stdout == "E22\n"
    built_at = os.stat(path).st_mtime_ns
    forkstart._built.clear()  # another session: finds it built
    assert forkstart.build(str(tmp_path)) == path and os.stat(path).st_mtime_ns == built_at


def test_no_compiler_means_lxc_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert forkstart.build(str(tmp_path / "cache")) is None
    assert not (tmp_path / "cache").exists()


def test_an_unwritable_cache_means_lxc_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert forkstart.build(str(tmp_path / "file" / "cache")) is None


def test_asked_for_lxc_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(forkstart.CHOICE_VARIABLE, forkstart.LXC_START)
    assert forkstart.starter_args() == [] and forkstart.start_path() == forkstart.LXC_START
    monkeypatch.delenv(forkstart.CHOICE_VARIABLE)
    assert forkstart.starter_args()[0] == "--forkstart" and forkstart.start_path() == forkstart.FORK_SERVER
