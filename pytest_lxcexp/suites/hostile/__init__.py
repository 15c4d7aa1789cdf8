"""hostile: one attack per VE, each refused or contained and named; host sysctls unchanged."""

# One VE per attack (see test_hostile.py); each runs /etc/lxcexp/attack.sh, written into
# its overlay before it starts, through the tool's own command workload.
DEFAULTS = {
    "ve_count": "14",
    "ve_workload": "cmd:sh /etc/lxcexp/attack.sh",
    "ve_tmpfs_size": "256M",
    "ve_network": "none",
    "ve_timeout": "120",
}
