"""boot_storm: every VE started at once, idling once up; start latency percentiles."""

# All VEs in one range, started at once by one starter per CPU; they idle once up.
DEFAULTS = {"ve_workload": "idle", "ve_count": "200", "ve_batch": "100000"}
