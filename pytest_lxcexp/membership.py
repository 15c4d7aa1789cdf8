"""This process's claim on the host's experiment: alone under the run lock, or one of the
pytest-xdist workers of one run sharing it (engine/shared.py). Only the first member sets
the host up and only the last takes it down; alone, a process is both."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from .engine.experiment import Experiment
from .engine.shared import SharedRun


def xdist_run_id(config: pytest.Config) -> str | None:
    """The id of the pytest-xdist run this worker belongs to, or None outside xdist."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput.get("testrunuid") if workerinput else None


@dataclass
class RunMembership:
    share: SharedRun | None = None
    first: bool = True
    last: bool = True
    taken_down: bool = False  # this process ran the experiment's final takedown

    def join(self, config: pytest.Config, experiment: Experiment) -> None:
        """Take the root: alone with the run lock, or as one of the run's xdist workers."""
        run_id = xdist_run_id(config)
        if run_id is None:
            experiment.lock()
            return
        host = config.workerinput.get("lxcexp_host", "")  # type: ignore[attr-defined]
        self.share = SharedRun(experiment.config.root, run_id, host)
        experiment.shared_lxcpath = True
        self.first = self.share.join().first

    def setup_done(self) -> None:
        """The first member's set-up is complete: the run's other workers may attach now."""
        if self.share is not None:
            self.share.setup_done()

    def release_waiting(self) -> None:
        """A setup step failed: the run's other workers, waiting at the gate, fail instead of waiting."""
        if self.share is not None and self.first:
            self.share.setup_done(ok=False)

    def leave_run(self) -> None:
        """Count this process out of the run; whether it was the last decides who takes the host down."""
        if self.share is not None:
            self.last = self.share.leave()

    def release(self, experiment: Experiment, setup_failed: bool = False) -> None:
        """Give up the run lock (alone) or the share's locks and files (the last member)."""
        share = self.share
        if share is None:
            experiment.unlock()
            return
        if setup_failed:
            self.release_waiting()
        share.finish()
        if self.last and not experiment.config.keep:
            share.cleanup_files()
