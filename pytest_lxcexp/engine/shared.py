"""One experiment shared by several processes of one run (pytest-xdist workers on a host).

The host's tmpfs, base, network and clones are built once, by the first process to
join, and taken down once, by the last to leave. Joining and leaving are serialized by
an exclusive lock on a gate file beside the root (the documented xdist way: a file lock
around a once-only setup); the first joiner holds the gate until its setup is done, so
the others never see a half-built experiment. Every member also holds the run lock
shared, so a different run (which takes it exclusively) still refuses.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from typing import IO

from .storage import RootError, gate_path, lock_file, lock_path, open_private, share_path, write_new

__all__ = ["Membership", "SharedRun", "gate_path", "remove_run_files", "share_path"]


@dataclass
class Membership:
    first: bool
    run_id: str


class SharedRun:
    """Membership of one process in a run's shared experiment."""

    def __init__(self, root: str, run_id: str, host: str = "") -> None:
        self.root = root
        self.run_id = run_id
        self.host = host  # the run's host this process belongs to (several hosts: each its own root)
        self._gate: IO[str] | None = None
        self._run_lock: IO[str] | None = None

    def _lock_gate(self) -> None:
        self._gate = lock_file(gate_path(self.root), fcntl.LOCK_EX)  # blocks while the first member sets up

    def release_gate(self) -> None:
        if self._gate is not None:
            self._gate.close()
            self._gate = None

    def _read(self) -> dict | None:
        try:
            with os.fdopen(open_private(share_path(self.root), os.O_RDONLY)) as handle:
                data = json.load(handle)
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write(self, data: dict | None) -> None:
        path = share_path(self.root)
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        write_new(path, json.dumps(data))

    def _take_run_lock(self) -> bool:
        """Hold the run lock shared; True when nobody else held it at all (so any share file
        is a crashed run's). Called with the gate held: joiners of this run come one by one."""
        alone = lock_file(lock_path(self.root), fcntl.LOCK_EX | fcntl.LOCK_NB)
        if alone is not None:
            try:
                # Not atomic (flock drops, then takes): a run taking the root exclusively in
                # between wins, and this one refuses below, as it should.
                fcntl.flock(alone, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                alone.close()
            else:
                self._run_lock = alone
                return True
        self._run_lock = lock_file(lock_path(self.root), fcntl.LOCK_SH | fcntl.LOCK_NB)
        if self._run_lock is None:
            raise RootError("another lxcexp run is using this root; wait for it to end")
        return False

    def join(self) -> Membership:
        """Join the run; `first` means: set the experiment up, then call setup_done().

        Raises RootError when another run holds the root.
        """
        self._lock_gate()
        try:
            alone = self._take_run_lock()
            share = self._read()
            if share is not None and alone:
                share = None  # left by a crashed run: nobody holds the run lock any more
            if share is not None and share.get("run") != self.run_id:
                raise RootError(f"another lxcexp run ({share.get('run')}) is using this root; wait for it to end")
            if share is not None and share.get("host", "") != self.host:
                raise RootError(
                    f"host {share.get('host')!r} of this run already uses this root; "
                    "give each host its own (LXCEXP_VE_ROOT in its --tx spec)"
                )
        except BaseException:
            self.release_gate()
            self._drop_run_lock()
            raise
        if share is None:
            self._write({"run": self.run_id, "members": 1, "ready": False, "host": self.host})
            return Membership(first=True, run_id=self.run_id)  # keeps the gate until setup_done()
        share["members"] += 1
        self._write(share)
        ready = share["ready"]
        self.release_gate()
        if not ready:
            self.leave()
            self._drop_run_lock()
            raise RootError("the first process of this run failed to set the experiment up")
        return Membership(first=False, run_id=self.run_id)

    def setup_done(self, ok: bool = True) -> None:
        share = self._read() or {"run": self.run_id, "members": 1, "host": self.host}
        share["ready"] = ok
        self._write(share)
        self.release_gate()

    def leave(self) -> bool:
        """Leave the run; True when this was the last member (it takes the experiment down)."""
        self._lock_gate()
        try:
            share = self._read()
            if share is None or share["run"] != self.run_id:
                return False
            share["members"] -= 1
            last = share["members"] <= 0
            self._write(None if last else share)
            return last
        finally:
            self.release_gate()

    def finish(self) -> None:
        """Drop the locks (the gate too, should a failed setup still hold it)."""
        self.release_gate()
        self._drop_run_lock()

    def _drop_run_lock(self) -> None:
        if self._run_lock is not None:
            self._run_lock.close()
            self._run_lock = None

    def cleanup_files(self) -> None:
        """After the last member's takedown: remove the files beside the root."""
        remove_run_files(self.root)


def remove_run_files(root: str) -> None:
    """The gate, share and lock files beside the root, once nobody holds the run lock."""
    try:
        held = lock_file(lock_path(root), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except FileNotFoundError:
        held = None
    except RootError:
        return  # not a file of ours: left for the user (the error names it at the next run)
    if held is None and os.path.lexists(lock_path(root)):
        return  # a run holds it
    try:
        for path in (gate_path(root), share_path(root), lock_path(root)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        if held is not None:
            held.close()
