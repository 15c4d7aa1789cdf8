"""churn: how many cycles each range goes through."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--churn-cycles", type=int, default=3, help="start/stop cycles per range (default 3)")


@pytest.fixture
def churn_cycles(pytestconfig: pytest.Config) -> int:
    cycles = pytestconfig.getoption("churn_cycles")
    if cycles < 1:
        raise pytest.UsageError("--churn-cycles: must be at least 1")
    return cycles
