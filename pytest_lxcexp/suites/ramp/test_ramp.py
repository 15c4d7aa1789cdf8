"""How many VEs can this host run? Start VEs in growing steps until the host or an objective stops it.

Run:  pytest --ve-suite ramp [--ve-slo=start_p99:500ms]   (its DEFAULTS: --ve-count=max --ve-workload=idle)
      pytest --ve-count=max                       (the same suite, with only your options)

One test: a ramp's steps depend on what the steps before them saw, and pytest fixes its
tests before any runs (see docs/design.md). The summary names the limit that stopped it.
"""


def test_ramp(ve_ramp):
    ramp = ve_ramp.run()
    assert ramp.reached > 0, ramp.describe()
    # VEs that failed with no host limit named are the silent failures this tool exposes.
    assert ramp.stop.named, ramp.describe()
