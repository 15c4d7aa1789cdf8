"""ConfigError: a bad option value, named. In a module of its own so that every parser
(config.py and the modules it uses, such as slo.py) raises the same error without a cycle."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad option value; the message names the option and the reason."""

    def __init__(self, option: str, reason: str) -> None:
        self.option = option
        self.reason = reason
        super().__init__(f"{option}: {reason}")
