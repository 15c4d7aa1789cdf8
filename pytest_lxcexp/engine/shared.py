"""One experiment shared by several processes of one run (pytest-xdist workers on a host).

The host's tmpfs, base, network and clones are built once, by the first process to
join, and taken down once, by the last to leave. Joining and leaving are serialized by
an exclusive lock on a gate file beside the root (the documented xdist way: a file lock
around a once-only setup); the first joiner holds the gate until its setup is done, so
the others never see a half-built experiment. Every member also holds the run lock
shared, so a different run (which takes it exclusively) still refuses.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from typing import IO

from .storage import RootError, lock_path


def _gate_path(root: str) -> str:
    return lock_path(root)[: -len(".lock")] + ".gate"


def _share_path(root: str) -> str:
    return lock_path(root)[: -len(".lock")] + ".share.json"


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
        fd = os.open(_gate_path(self.root), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        self._gate = os.fdopen(fd, "r+")
        fcntl.flock(self._gate, fcntl.LOCK_EX)  # blocks while the first member sets up

    def release_gate(self) -> None:
        if self._gate is not None:
            self._gate.close()
            self._gate = None

    def _read(self) -> dict | None:
        try:
            with open(_share_path(self.root)) as handle:
                return json.load(handle)
        except (FileNotFoundError, ValueError):
            return None

    def _write(self, data: dict | None) -> None:
        path = _share_path(self.root)
        if data is None:
            if os.path.exists(path):
                os.unlink(path)
            return
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(path + ".tmp", path)

    def join(self) -> Membership:
        """Join the run; `first` means: set the experiment up, then call setup_done().

        Raises RootError when another run holds the root.
        """
        fd = os.open(lock_path(self.root), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        self._run_lock = os.fdopen(fd, "r+")
        try:
            fcntl.flock(self._run_lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            self._run_lock.close()
            self._run_lock = None
            raise RootError("another lxcexp run is using this root; wait for it to end") from None
        self._lock_gate()
        share = self._read()
        if share is not None and share["run"] != self.run_id:
            self.release_gate()
            self._drop_run_lock()
            raise RootError(f"another lxcexp run ({share['run']}) is using this root; wait for it to end")
        if share is not None and share.get("host", "") != self.host:
            self.release_gate()
            self._drop_run_lock()
            raise RootError(
                f"host {share.get('host')!r} of this run already uses this root; "
                "give each host its own (LXCEXP_VE_ROOT in its --tx spec)"
            )
        if share is None:
            self._write({"run": self.run_id, "members": 1, "ready": False, "host": self.host})
            return Membership(first=True, run_id=self.run_id)  # keeps the gate until setup_done()
        share["members"] += 1
        self._write(share)
        ready = share["ready"]
        self.release_gate()
        if not ready:
            raise RootError("the first process of this run failed to set the experiment up")
        return Membership(first=False, run_id=self.run_id)

    def setup_done(self, ok: bool = True) -> None:
        share = self._read() or {"run": self.run_id, "members": 1}
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
        """Drop the locks; the last member also removes the gate and lock files."""
        self._drop_run_lock()

    def _drop_run_lock(self) -> None:
        if self._run_lock is not None:
            self._run_lock.close()
            self._run_lock = None

    def cleanup_files(self) -> None:
        """After the last member's takedown: remove the files beside the root."""
        for path in (_gate_path(self.root), lock_path(self.root)):
            if os.path.exists(path):
                os.unlink(path)
