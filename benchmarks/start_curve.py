"""What a start costs as the host fills: VEs started in chunks, ms per VE of each chunk.

    .venv/bin/python benchmarks/start_curve.py --count 3000 --chunk 500
    .venv/bin/python benchmarks/start_curve.py --count 3000 --chunk 500 --perf /tmp/curve

Idle busybox VEs (no workload traffic), the tool's own engine. With --perf DIR, each
chunk's starts run under a system-wide `perf record -g` (DIR/chunk-<first>.data), to see
which kernel paths grow with the number of VEs running (`perf report --children -i ...`).
Then the takedown, with the time of each of its steps (the takedown report's). One run; the host's load
average is printed beside each chunk, since other work on the host moves these numbers.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pytest_lxcexp.engine.config import build_config  # noqa: E402
from pytest_lxcexp.engine.experiment import Experiment  # noqa: E402

ROOT = "/tmp/lxcexp-curve"
BRIDGE = "vecurve"
SUBNET = "10.241.0.0/16"


def start_perf(output: str) -> subprocess.Popen:
    """A system-wide `perf record -g` at 200 Hz into `output`, running once this returns."""
    recorder = subprocess.Popen(
        ["perf", "record", "-F", "200", "-a", "-g", "-o", output],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return recorder


def stop_perf(recorder: subprocess.Popen | None) -> None:
    if recorder:
        recorder.send_signal(signal.SIGINT)
        recorder.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--perf", metavar="DIR", help="record each chunk with perf into DIR")
    parser.add_argument("--perf-takedown", metavar="FILE", help="record the takedown with perf into FILE")
    parser.add_argument("--tune-host", action="store_true", help="the tool's --ve-tune-host")
    args = parser.parse_args()
    config = build_config(
        count=args.count,
        root=ROOT,
        bridge=BRIDGE,
        subnet=SUBNET,
        workload="idle",
        tmpfs_size=f"{max(2, args.count // 1500)}G",
        tune_host=args.tune_host,
    )
    experiment = Experiment(config)
    experiment.check()
    experiment.lock()
    try:
        experiment.setup()
        began = time.monotonic()
        for first in range(1, args.count + 1, args.chunk):
            last = min(args.count, first + args.chunk - 1)
            recorder = None
            if args.perf:
                os.makedirs(args.perf, exist_ok=True)
                recorder = start_perf(os.path.join(args.perf, f"chunk-{first}.data"))
            started = time.monotonic()
            results = experiment.start(first, last)
            spent = time.monotonic() - started
            stop_perf(recorder)
            failed = sum(not result.ok for result in results)
            print(
                f"ve{first}-ve{last}: {1000 * spent / (last - first + 1):6.1f} ms/VE with {first - 1:>5} running"
                f"  ({failed} failed, load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        total = time.monotonic() - began
        print(f"all {args.count}: {total:.1f} s, {1000 * total / args.count:.1f} ms/VE", flush=True)
        recorder = start_perf(args.perf_takedown) if args.perf_takedown else None
        down = time.monotonic()
        report = experiment.takedown()
        stop_perf(recorder)
        for name, seconds in report.seconds.items():
            print(f"  {name:<12} {seconds:6.1f} s", flush=True)
        print(f"takedown of {args.count}: {time.monotonic() - down:.1f} s", flush=True)
    finally:
        experiment.unlock()
    return 0


if __name__ == "__main__":
    sys.exit(main())
