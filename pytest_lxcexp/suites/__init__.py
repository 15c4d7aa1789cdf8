"""The built-in suites, shipped with the plugin: each a package of tests over the experiment's
fixtures, run as `pytest --ve-suite NAME` or `pytest --pyargs pytest_lxcexp.suites.NAME`.

A suite's package may set DEFAULTS (ini name -> a string, or a bool for a flag): they stand in for the plugin's own
defaults when the suite runs; the command line and the user's ini file still win.
"""

from __future__ import annotations

import importlib
from pathlib import Path

SUITES_DIR = Path(__file__).resolve().parent
# What `pytest --ve-count=N` runs when none of the session's own tests uses the experiment.
DEFAULT_SUITE = "ping"
# What `pytest --ve-count=max` runs in the same case.
RAMP_SUITE = "ramp"


class UnknownSuite(ValueError):
    pass


def suite_names() -> list[str]:
    return sorted(path.name for path in SUITES_DIR.iterdir() if (path / "__init__.py").is_file())


def suite_path(name: str) -> Path:
    if name not in suite_names():
        raise UnknownSuite(f"no built-in suite {name!r}; there are: {', '.join(suite_names())}")
    return SUITES_DIR / name


def suite_defaults(name: str) -> dict[str, str | bool]:
    suite_path(name)
    module = importlib.import_module(f"{__name__}.{name}")
    return dict(getattr(module, "DEFAULTS", {}))


def suite_of(path: Path) -> str | None:
    """The built-in suite a file or directory lies in, if any."""
    try:
        relative = path.resolve().relative_to(SUITES_DIR)
    except (ValueError, OSError):
        return None
    if not relative.parts or relative.parts[0] not in suite_names():
        return None
    return relative.parts[0]
