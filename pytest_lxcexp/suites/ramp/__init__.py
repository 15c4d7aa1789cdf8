"""ramp: how many VEs can this host run? VEs started in growing steps until the host or the objective stops it."""

# Idle VEs: what is measured is how many the host runs, not what they do. --ve-slo= (empty)
# on the command line ramps to the host's own limits.
DEFAULTS = {"ve_count": "max", "ve_workload": "idle", "ve_slo": "start_p99:500ms"}
