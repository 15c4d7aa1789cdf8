"""The init script a VE runs, the log it writes, and the parser the host reads it with.

Log format (one line each, written by the VE into /var/log/lxcexp/workload.log):

    lxcexp-begin <epoch seconds> <hostname>
    PING 127.0.0.1 (127.0.0.1): 56 data bytes
    64 bytes from 127.0.0.1: seq=0 ttl=64 time=0.044 ms      <- one per ping answered
    ...
    lxcexp-end <epoch seconds> rc=<ping exit status>
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .safefs import read_ve_text

WORKLOAD_VERSION = 1
INIT_PATH = "/sbin/lxcexp-workload"
ENV_PATH = "etc/lxcexp/workload.env"

INIT_SCRIPT = r"""#!/bin/sh
# lxcexp workload (version @VERSION@): this is the VE's init (PID 1).
. /etc/lxcexp/workload.env
# No fork before the log is open ([ is a builtin): a VE out of PIDs then logs why it failed.
[ -d /var/log/lxcexp ] || mkdir -p /var/log/lxcexp
exec >>/var/log/lxcexp/workload.log 2>&1
echo "lxcexp-begin $(date +%s) $(hostname)"
ip link set lo up || echo "lxcexp-error lo-up"
ping -c "$PINGS" -i "$INTERVAL" "$TARGET"
echo "lxcexp-end $(date +%s) rc=$?"
# Stay up, as the original's VEs did: the experiment measures running containers.
while :; do sleep 86400; done
""".replace("@VERSION@", str(WORKLOAD_VERSION))

_BEGIN = re.compile(r"^lxcexp-begin (\d+)")
_END = re.compile(r"^lxcexp-end (\d+) rc=(\d+)")
_REPLY = re.compile(r"^\d+ bytes from ")


def workload_env(pings: int, interval: float, target: str = "127.0.0.1") -> str:
    return f"PINGS={pings}\nINTERVAL={interval:g}\nTARGET={target}\n"


@dataclass(frozen=True)
class WorkloadLog:
    """What one VE's log says it did."""

    present: bool
    began: int | None = None
    pings: int = 0
    ended: int | None = None
    exit_status: int | None = None

    @property
    def finished(self) -> bool:
        return self.ended is not None


def parse_log(text: str | None) -> WorkloadLog:
    if text is None:
        return WorkloadLog(present=False)
    began = ended = status = None
    pings = 0
    for line in text.splitlines():
        if _REPLY.match(line):
            pings += 1
        elif match := _BEGIN.match(line):
            began = int(match.group(1))
        elif match := _END.match(line):
            ended, status = int(match.group(1)), int(match.group(2))
    return WorkloadLog(present=True, began=began, pings=pings, ended=ended, exit_status=status)


def read_log(path: str) -> WorkloadLog:
    # The VE wrote it: a symlink on the way is refused, read as no log (see safefs).
    text = read_ve_text(path)
    return WorkloadLog(present=False) if text is None else parse_log(text)


def log_tail(path: str, lines: int = 5) -> str:
    text = read_ve_text(path)
    return "" if text is None else "\n".join(text.splitlines()[-lines:])
