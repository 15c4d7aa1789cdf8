"""Which tests a session runs: its own, or a built-in suite (pytest_lxcexp/suites).

- `--ve-suite NAME` runs that built-in suite by itself: its directory becomes the session's
  test path before the initial conftests load, so the suite's own options (churn's
  --churn-cycles) are known when the command line is parsed.
- A session given a --ve-* option but no test paths also collects the ping suite, and after
  collection keeps it only if none of its own tests uses the experiment's fixtures: that is
  how `pytest --ve-count=1000` runs the experiment from any directory, and in this project's
  checkout (whose testpaths hold only the project's own tests). The choice is made from the
  collected items alone, so every xdist worker makes the same one.
- The defaults of the built-in suite a session runs (its DEFAULTS) stand below the command
  line and the ini file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import suites
from .fixtures import EXPERIMENT_FIXTURES


@dataclass
class SuiteChoice:
    suite: str | None = None  # the built-in suite among the session's test paths: its defaults apply
    fallback: Path | None = None  # collected in case none of the session's own tests uses the experiment
    note: str | None = None  # the one line that says what runs


suite_choice_key = pytest.StashKey[SuiteChoice]()


def _within(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except (ValueError, OSError):
        return False
    return True


def arg_path(arg: str, invocation_dir: Path, pyargs: bool) -> Path | None:
    """The file or directory a test argument (a path or node id, or with --pyargs a module) names."""
    target = arg.partition("[")[0].split("::")[0]
    if pyargs:
        try:
            spec = importlib.util.find_spec(target)
        except (ImportError, ValueError, AttributeError):
            spec = None
        if spec is not None:
            if spec.submodule_search_locations:
                return Path(list(spec.submodule_search_locations)[0])
            if spec.origin:
                return Path(spec.origin)
    path = invocation_dir / target
    return path if path.exists() else None


def add_chosen_suite(early_config: pytest.Config, args: list[str]) -> None:
    """--ve-suite NAME: the suite's directory becomes the test path (called before the initial conftests load)."""
    namespace = early_config.known_args_namespace
    name = getattr(namespace, "ve_suite", None)
    if not name:
        return
    try:
        directory = suites.suite_path(name)
    except suites.UnknownSuite as error:
        raise pytest.UsageError(f"--ve-suite: {error}") from None
    given = list(getattr(namespace, "file_or_dir", None) or [])
    invocation_dir = early_config.invocation_params.dir
    # A word that is no path may be the value of an option the suite's conftest adds (--churn-cycles 6),
    # unknown until that conftest loads: it is left for pytest's own parse to place.
    paths = {arg: arg_path(arg, invocation_dir, namespace.pyargs) for arg in given}
    outside = [arg for arg, path in paths.items() if path is not None and not _within(path, directory)]
    if outside:
        raise pytest.UsageError(
            f"--ve-suite: runs the built-in suite {name} by itself; test paths outside it ({', '.join(outside)}) "
            "go without the option"
        )
    if not any(path is not None for path in paths.values()):
        # Both: the namespace is what the initial conftests are found from, args what pytest parses next.
        args.append(str(directory))
        namespace.file_or_dir = [*given, str(directory)]


def experiment_options_given(config: pytest.Config) -> bool:
    """Any --ve-* option on the command line (each one's default is None, its ini value aside)."""
    return any(value is not None for name, value in vars(config.option).items() if name.startswith("ve_"))


def choose(config: pytest.Config) -> SuiteChoice:
    """Which built-in suite the session's test paths name, and whether ping is collected as the fallback."""
    invocation_dir = config.invocation_params.dir
    named = set()
    for arg in config.args:
        path = arg_path(str(arg), invocation_dir, config.option.pyargs)
        name = suites.suite_of(path) if path is not None else None
        if name is not None:
            named.add(name)
    if len(named) > 1:
        raise pytest.UsageError(
            f"--ve-suite: the built-in suites {' and '.join(sorted(named))} share one experiment, each with "
            "defaults of its own; run them one at a time"
        )
    choice = SuiteChoice(suite=named.pop() if named else None)
    if (
        choice.suite is None
        and config.args_source != pytest.Config.ArgsSource.ARGS
        and experiment_options_given(config)
    ):
        choice.fallback = suites.suite_path(fallback_suite(config))
        config.args.append(str(choice.fallback))
    return choice


def suite_defaults(config: pytest.Config) -> dict[str, str | bool]:
    choice = config.stash.get(suite_choice_key, None)
    if choice is None or choice.suite is None:
        return {}
    return suites.suite_defaults(choice.suite)


def _uses_the_experiment(item: pytest.Item) -> bool:
    return bool(EXPERIMENT_FIXTURES & set(getattr(item, "fixturenames", ())))


def keep_own_or_fallback(config: pytest.Config, items: list[pytest.Item]) -> None:
    """After collection: the session's own tests if any uses the experiment, else the fallback suite."""
    choice = config.stash.get(suite_choice_key, None)
    if choice is None or choice.fallback is None:
        return
    fallback = [item for item in items if _within(item.path, choice.fallback)]
    own = [item for item in items if not _within(item.path, choice.fallback)]
    if any(_uses_the_experiment(item) for item in own):
        keep, drop = own, fallback
        if drop:
            choice.note = (
                f"lxcexp: this session's own tests use the experiment; the built-in suite {choice.fallback.name} "
                "is not run"
            )
    else:
        keep, drop = fallback, own
        choice.note = fallback_note(choice.fallback.name)
    if drop:
        items[:] = keep
        config.hook.pytest_deselected(items=drop)


def fallback_suite(config: pytest.Config) -> str:
    """What a session with no test of its own runs: the ramp for --ve-count=max, else ping."""
    given = config.getoption("ve_count", None)
    count = given if given is not None else config.getini("ve_count")
    return suites.RAMP_SUITE if str(count).strip() == "max" else suites.DEFAULT_SUITE


def fallback_note(name: str) -> str:
    return (
        f"lxcexp: no test of this session uses the experiment's fixtures: running the built-in suite "
        f"{name} (--ve-suite NAME runs another)"
    )


def ids_are_fallback(config: pytest.Config, ids: Sequence[str]) -> bool:
    """On the xdist controller, which collects nothing: whether a worker's collection is the fallback suite."""
    choice = config.stash.get(suite_choice_key, None)
    if choice is None or choice.fallback is None or not ids:
        return False
    root, directory = config.rootpath, choice.fallback
    inside_root = _within(directory, root)

    def in_fallback(nodeid: str) -> bool:
        relative = nodeid.split("::")[0]
        if inside_root:
            return _within(root / relative, directory)
        # Outside the rootdir, pytest names the suite's files relative to the suite's directory.
        return (directory / relative).is_file() and not (root / relative).exists()

    return all(in_fallback(nodeid) for nodeid in ids)


class SuiteChoicePlugin:
    """Registered by the plugin's configure: its modifyitems must run first, the preflight's last."""

    def __init__(self) -> None:
        self.told = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        # Before -k, -m and --lf select among the items.
        keep_own_or_fallback(config, items)

    def pytest_report_collectionfinish(self, config: pytest.Config) -> str | None:
        choice = config.stash.get(suite_choice_key, None)
        return choice.note if choice is not None else None

    def pytest_report_header(self, config: pytest.Config) -> str | None:
        name = config.getoption("ve_suite")
        return f"lxcexp: running the built-in suite {name} (--ve-suite)" if name else None

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: Sequence[str]) -> None:
        # The controller collects nothing: it learns what runs from the first worker's collection.
        config = node.config  # type: ignore[attr-defined]
        if self.told:
            return
        self.told = True
        if ids_are_fallback(config, ids):
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(fallback_note(fallback_suite(config)))
