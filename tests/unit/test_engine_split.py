"""The engine's Experiment keeps the experiment; xdist membership, the phase, the status line
and the hooks' fields are the pytest layer's (session.RunState, membership.RunMembership)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_lxcexp.engine.config import build_config
from pytest_lxcexp.engine.experiment import Experiment
from pytest_lxcexp.engine.stats import VERecord
from pytest_lxcexp.engine.storage import RootError, RunLock, gate_path, lock_path, share_path
from pytest_lxcexp.membership import RunMembership
from pytest_lxcexp.session import RunState

SESSION_ATTRIBUTES = {
    "share",
    "first_member",
    "last_member",
    "taken_down",
    "status",
    "status_end",
    "record_fields",
    "phase",
    "stale_marker",
}


def _experiment(root: Path) -> Experiment:
    return Experiment(build_config(root=str(root), count=3))


def test_the_experiment_carries_no_session_state(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path / "exp")
    assert not [name for name in SESSION_ATTRIBUTES if hasattr(experiment, name)]
    # Whatever it holds is the engine's own or plain data, never an object of the pytest layer.
    foreign = {
        name: type(value).__module__
        for name, value in vars(experiment).items()
        if not type(value).__module__.startswith(("builtins", "pytest_lxcexp.engine"))
    }
    assert foreign == {}


def test_a_phase_is_left_as_done_even_when_it_fails(tmp_path: Path) -> None:
    state = RunState(build_config(root=str(tmp_path / "exp")))
    assert state.phase == "preflight"  # what an interrupt before any set-up is reported against
    with state.in_phase("setup base"):
        assert state.phase == "setup base"
    assert state.phase == "after setup base"
    with pytest.raises(OSError), state.in_phase("setup clones"):
        raise OSError("no space left")
    assert state.phase == "after setup clones"


def test_hook_fields_are_plain_and_a_failing_hook_is_recorded(tmp_path: Path) -> None:
    state = RunState(build_config(root=str(tmp_path / "exp")))
    records = [VERecord(index, "RUNNING", 10 + index, 3, 3, True, True) for index in (1, 2)]
    assert state.with_fields(records) is records  # no hook: the records as they were

    def fields(record: VERecord) -> dict:
        if record.index == 2:
            raise KeyError("colour")
        return {"colour": "red", "peers": [1, 2], "seen": None}

    state.ve_fields = fields
    one, two = state.with_fields(records)
    assert one.fields == {"colour": "red", "peers": "[1, 2]", "seen": None}
    assert two.fields == {"ve_fields_error": "KeyError: 'colour'"}


def test_alone_a_process_holds_the_run_lock_until_it_releases(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path / "exp")
    member = RunMembership()
    member.join(SimpleNamespace(), experiment)  # no workerinput: not an xdist worker
    assert (member.first, member.last, member.share) == (True, True, None)
    with pytest.raises(RootError):
        RunLock(experiment.config.root).acquire()
    member.release(experiment)
    other = RunLock(experiment.config.root)
    other.acquire()
    other.release()


def test_xdist_workers_share_one_experiment_first_in_last_out(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    worker = SimpleNamespace(workerinput={"testrunuid": "run-1", "lxcexp_host": ""})
    experiments = [_experiment(root), _experiment(root)]
    one, two = RunMembership(), RunMembership()
    one.join(worker, experiments[0])
    assert one.first and experiments[0].shared_lxcpath
    one.setup_done()  # the gate opens for the second worker
    two.join(worker, experiments[1])
    assert not two.first
    two.leave_run()
    two.release(experiments[1])
    assert not two.last and os.path.exists(share_path(str(root)))
    one.leave_run()
    one.release(experiments[0])
    assert one.last
    beside = (lock_path(str(root)), gate_path(str(root)), share_path(str(root)))
    assert not [path for path in beside if os.path.exists(path)]
