"""network_mesh: neighbours ping each other across the bridge; a hook records who answered."""

DEFAULTS = {"ve_workload": "ping-neighbour", "ve_count": "50", "ve_pings": "10", "ve_ping_interval": "0.5"}
