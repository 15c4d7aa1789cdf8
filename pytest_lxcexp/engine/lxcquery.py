"""The liblxc helper: the state of VEs, or a stop, through python3-lxc, in a small process of
its own, run as a script (like starter.py).

    python lxcquery.py state|stop LXCPATH  <names on stdin, one per line>

It prints one JSON line per VE: state: {"name", "state", "pid"}; stop: {"name", "was_running"};
{"name", "exception"} when liblxc (or its binding) failed for that VE.

Why not the tool's own process: liblxc moves its caller into a VE's cgroups and keeps every
loaded container's lxc.log open (see docs/design.md). Why not a fork of the tool: the tool
runs threads (the report's sampler; execnet's under xdist), and a fork of a threaded process
can deadlock in the child (Python 3.12 warns of it). An executed interpreter importing only the
standard library and the binding has neither problem, and costs less than a fork of a big process.
"""

from __future__ import annotations

import json
import sys


def state(container: object) -> dict:
    now = container.state  # type: ignore[attr-defined]
    pid = container.init_pid if now == "RUNNING" else -1  # type: ignore[attr-defined]
    return {"state": now, "pid": pid if pid and pid > 0 else None}


def stop(container: object) -> dict:
    was_running = bool(container.running)  # type: ignore[attr-defined]
    if was_running:
        container.stop()  # type: ignore[attr-defined] - SIGKILL to init: the whole pid namespace goes with it
    return {"was_running": was_running}


ACTIONS = {"state": state, "stop": stop}


def main(argv: list[str] | None = None) -> int:
    mode, lxcpath = argv if argv is not None else sys.argv[1:]
    action = ACTIONS[mode]
    try:
        import lxc
    except ImportError as error:
        lxc, missing = None, f"python3-lxc is not importable: {error}"
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        try:
            if lxc is None:
                raise RuntimeError(missing)
            result = {"name": name, **action(lxc.Container(name, lxcpath))}
        except Exception as error:  # noqa: BLE001 - reported per VE, the rest go on
            result = {"name": name, "exception": f"{type(error).__name__}: {error}"}
        # A closed pipe (the tool was interrupted) ends this process after its current VE.
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
