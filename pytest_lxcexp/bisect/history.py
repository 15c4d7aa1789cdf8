"""The commits a bisection walks: from --good (known good) to --bad (known bad), on bad's first-parent line.

Only git (no LXC, no build): SOURCE is a git tree or bundle as `lxcexp build-lxc` takes it
(a bundle is read through build-lxc's bare mirror). The line is bad's first-parent chain
back to good, as `git bisect --first-parent` walks it: every commit on it is one that was
the branch's tip once, so it builds as released; a regression made inside a merged branch
is named by its merge commit.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from ..engine import build_lxc
from ..engine.errors import ConfigError


class HistoryError(ConfigError):
    """A SOURCE, --good or --bad that cannot be bisected; `option` names which."""


@dataclass(frozen=True)
class Commit:
    sha: str
    describe: str  # `git describe --tags --always`
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:10]

    def __str__(self) -> str:
        return f"{self.short} ({self.describe}) {self.subject}"


@dataclass(frozen=True)
class History:
    source: str  # SOURCE as given (what build-lxc builds from)
    repository: str  # the git repository holding the commits
    good: Commit
    commits: tuple[Commit, ...]  # after good, oldest first; the last is --bad


def _git(repository: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", repository, *args], capture_output=True, text=True)


def _commit(repository: str, sha: str) -> Commit:
    describe = _git(repository, "describe", "--tags", "--always", sha).stdout.strip() or sha[:10]
    subject = _git(repository, "log", "-1", "--format=%s", sha).stdout.strip()
    return Commit(sha, describe, subject)


def _resolve(repository: str, option: str, ref: str) -> str:
    done = _git(repository, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if done.returncode != 0 or not done.stdout.strip():
        raise HistoryError(option, f"{ref!r} names no commit in {repository}")
    return done.stdout.strip()


def load_history(source: str, good_ref: str, bad_ref: str, cache: str = build_lxc.CACHE) -> History:
    """The line from good to bad; an error naming the option when it is not one."""
    for option, ref in (("--good", good_ref), ("--bad", bad_ref)):
        if not ref or not ref.strip():
            raise HistoryError(option, "give a commit, tag or branch")
    try:
        kind = build_lxc.classify(source)
        if kind.kind == "tarball":
            raise HistoryError("SOURCE", f"{source} is a tarball: one tree, no history; give a git tree or bundle")
        # resolve() gives the repository (for a bundle, build-lxc's mirror of it) and checks bad.
        repository = build_lxc.resolve(kind, bad_ref, cache).repository
    except build_lxc.BuildError as error:
        text = str(error)
        if text.startswith("SOURCE"):
            raise HistoryError("SOURCE", text.removeprefix("SOURCE: ")) from None
        raise HistoryError("--bad", f"{bad_ref!r} names no commit in {source}") from None
    assert repository is not None
    good, bad = _resolve(repository, "--good", good_ref), _resolve(repository, "--bad", bad_ref)
    if good == bad:
        raise HistoryError("--bad", f"{bad_ref!r} is the same commit as --good {good_ref!r}")
    if _git(repository, "merge-base", "--is-ancestor", good, bad).returncode != 0:
        raise HistoryError("--good", f"{good_ref!r} is not an ancestor of --bad {bad_ref!r}: good must come before bad")
    listed = _git(repository, "rev-list", "--first-parent", "--reverse", f"{good}..{bad}")
    shas = listed.stdout.split()
    first_parent = _git(repository, "rev-parse", f"{shas[0]}^1").stdout.strip() if shas else ""
    if first_parent != good:
        raise HistoryError(
            "--good",
            f"{good_ref!r} is not on --bad {bad_ref!r}'s first-parent line (it is inside a merged branch); "
            f"give a commit on that line, e.g. the merge base",
        )
    return History(source, repository, _commit(repository, good), tuple(_commit(repository, sha) for sha in shas))
