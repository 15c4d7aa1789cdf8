"""What a guest needs to reach the package registries the way this host does: the hosts
and ports to forward (apt mirror, PyPI), and the host's pip settings rewritten for it.

Read from the host's own settings (apt sources, `apt-config dump`, `pip config list`,
PIP_* and *_proxy variables), never guessed: a guest fetches from exactly where the host does.
"""

from __future__ import annotations

import os
import subprocess
from urllib.parse import urlsplit

DEFAULT_INDEX = "https://pypi.org/simple"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
GUEST_CA_BUNDLE = "/etc/lxcexp/host-ca-certificates.crt"
PYPI_FILES = "files.pythonhosted.org"
# pip settings worth carrying over (file:// indexes and find-links are this host's disks).
PIP_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout", "retries",
            "disable-pip-version-check", "constraint", "proxy")  # fmt: skip


def host_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def host_pip_settings() -> dict[str, str]:
    """The host's effective pip settings (config files, then PIP_* variables), by key."""
    settings: dict[str, str] = {}
    result = subprocess.run(["pip3", "config", "list"], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.split(".", 1)[-1]
        settings[name] = value.strip().strip("'\"")
    for key, value in os.environ.items():
        if key.startswith("PIP_"):
            settings[key[4:].lower().replace("_", "-")] = value
    return settings


def guest_pip_conf(settings: dict[str, str]) -> tuple[str, list[str]]:
    """pip.conf text for the guest and the index URLs it uses (http/https only)."""
    lines = ["[global]"]
    indexes = []
    for key in PIP_KEYS:
        value = settings.get(key)
        if value is None:
            continue
        if key in ("index-url", "extra-index-url"):
            urls = [url for url in value.split() if host_port(url)]
            indexes += urls
            if not urls:
                continue
            value = " ".join(urls)
        if key == "constraint":
            value = "/etc/pip-constraints.txt"
        lines.append(f"{key} = {value}")
    if "index-url" not in settings:
        indexes.insert(0, DEFAULT_INDEX)
    # The host's CA bundle, local CAs included, is copied into the guest (run.py).
    lines.append(f"cert = {GUEST_CA_BUNDLE}")
    # Byte-compiling every installed module took minutes under TCG; Python compiles what
    # it imports anyway.
    lines.append("no-compile = true")
    return "\n".join(lines) + "\n", indexes


def registry_endpoints(apt_sources: str, pip_indexes: list[str]) -> list[tuple[str, int]]:
    """Every (host, port) the guest's apt and pip connect to, each once."""
    found: list[tuple[str, int]] = []
    for line in apt_sources.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "deb":
            endpoint = host_port(words[1])
            if endpoint:
                found.append(endpoint)
    for url in pip_indexes:
        endpoint = host_port(url)
        if endpoint:
            found.append(endpoint)
            if endpoint[0] == "pypi.org":
                found.append((PYPI_FILES, 443))  # where pypi.org's links point
    return list(dict.fromkeys(found))
