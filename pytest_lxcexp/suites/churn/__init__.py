"""churn: repeated start/stop cycles over the same VEs, like LXC's own concurrency test."""

# Short pings: each cycle waits for the workload to end before it stops the VEs.
DEFAULTS = {"ve_count": "20", "ve_pings": "3", "ve_ping_interval": "0.2"}
