"""The engine: everything that touches the host. It never imports pytest."""
