"""Repo-level conftest: the unit tests drive the plugin through pytester."""

pytest_plugins = ["pytester"]
