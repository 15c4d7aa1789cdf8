"""pytest-lxcexp: container-density experiments with real LXC as a pytest session."""

__version__ = "0.1.0"
