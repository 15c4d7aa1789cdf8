"""What the report plugin made of one session: read by the terminal summary and the HTML hook."""

from __future__ import annotations

from dataclasses import dataclass, field

from .compare import Comparison, Regression
from .results import Results


@dataclass
class Finished:
    results: Results | None = None
    results_path: str | None = None
    run_dir: str | None = None
    index_path: str | None = None
    # This run's builds against its first build, then this run against --ve-compare's.
    comparisons: list[Comparison] = field(default_factory=list)
    compare_path: str | None = None
    reference: Results | None = None  # the run compared with (--ve-compare)
    regressions: list[Regression] = field(default_factory=list)
    held: str | None = None  # the line that says --ve-compare-fail's rules held
    notes: list[str] = field(default_factory=list)  # things the user should know (rules not checked, ...)
    errors: list[str] = field(default_factory=list)  # things that went wrong in the reporting itself
