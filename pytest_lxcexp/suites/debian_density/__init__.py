"""debian_density: VEs of a debootstrapped Debian base, each booting its own systemd."""

# The first run builds the base with debootstrap (a few minutes); later runs reuse the cached tarball.
DEFAULTS = {"ve_base": "debian", "ve_init": "system", "ve_count": "10", "ve_pings": "5", "ve_ping_interval": "0.5"}
