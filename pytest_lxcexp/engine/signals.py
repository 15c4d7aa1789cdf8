"""Short critical sections that Ctrl-C and SIGTERM must not cut in half.

Kept free of other engine imports so every engine module can use it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for a few syscalls; they are delivered right after the block.

    Python runs signal handlers in the main thread only, between bytecodes, whichever thread
    the kernel gave the signal to. Blocking the signal in this thread (pthread_sigmask) is
    not enough once any other thread lives (the report's sampler, execnet's under xdist):
    the kernel hands it to that thread and the handler still runs here, mid-block. So the
    main thread swaps its handlers for one that notes the signal, and raises what it noted
    once the block is done; nothing is lost.
    """
    if threading.current_thread() is not threading.main_thread():
        # Only the main thread may change handlers, and only it runs them: hold them at the kernel.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, DEFERRED)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return
    noted: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        noted.append(signum)

    previous = {signum: signal.signal(signum, note) for signum in DEFERRED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            # None: a handler not set from Python; the default is the nearest we can restore.
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(noted):
            signal.raise_signal(signum)
