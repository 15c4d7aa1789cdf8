"""Short critical sections that Ctrl-C and SIGTERM must not cut in half.

Kept free of other engine imports so every engine module can use it.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

DEFERRED = frozenset({signal.SIGINT, signal.SIGTERM})


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for a few syscalls; they are delivered right after the block.

    Blocking (not ignoring) loses nothing: the kernel keeps the signal pending and Python's
    handler runs as soon as the mask is restored.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, DEFERRED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
