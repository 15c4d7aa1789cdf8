"""The state reader: when each VE's LXC monitor announced RUNNING, run as a script.

    python state_reader.py FIFO        (until its stdin closes; then prints {"veN": epoch, ...})

liblxc's monitors announce every state change to the lxcpath's monitor FIFO,
`/run/lxc/<lxcpath>/monitor-fifo` (the legacy lxc-monitord channel, in liblxc 5.0 to
7.0), right after they tell the lxc-start waiting for the VE: `struct lxc_msg {int type;
char name[256]; int value;}`, written atomically. One small process reads it for all
VEs of a start and stamps each RUNNING message as it arrives (its own process: the
tool's threads could wait up to the interpreter's switch interval, 5 ms, for the GIL).

A monitor opens the FIFO without blocking and skips it when no one reads (ENXIO) or it
is gone (ENOENT); but once open it writes blocking, and a write after the last reader
closed would be EPIPE. So this process reads as long as the FIFO exists: the tool
removes the FIFO first, then closes our stdin, and we read for DRAIN seconds more.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import sys
import time

MESSAGE = struct.Struct("=i256si")  # lxc_msg: type, name[NAME_MAX + 1], value
STATE_MESSAGE = 0  # lxc_msg_state
RUNNING = 2  # lxc_state_t: STOPPED, STARTING, RUNNING, ...
DRAIN = 0.2


def main() -> int:
    # Only the tool ends it (by closing its stdin): never a signal meant for the tool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fifo = sys.argv[1]
    # Read-write: the open does not wait for a writer, and no EOF comes between two monitors.
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    running: dict[str, float] = {}
    pending = b""
    stdin = sys.stdin.fileno()
    print("ready", flush=True)
    until = None
    while until is None or time.monotonic() < until:
        wanted = [fd] if until is not None else [fd, stdin]
        ready, _, _ = select.select(wanted, [], [], None if until is None else max(0.0, until - time.monotonic()))
        if fd in ready:
            now = time.time()
            with contextlib.suppress(BlockingIOError):
                pending += os.read(fd, MESSAGE.size * 64)
            while len(pending) >= MESSAGE.size:
                kind, name, value = MESSAGE.unpack_from(pending)
                pending = pending[MESSAGE.size :]
                if kind == STATE_MESSAGE and value == RUNNING:
                    running.setdefault(name.split(b"\0", 1)[0].decode(errors="replace"), now)
        if stdin in ready and not os.read(stdin, 4096):
            until = time.monotonic() + DRAIN
    os.close(fd)
    print(json.dumps(running), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
