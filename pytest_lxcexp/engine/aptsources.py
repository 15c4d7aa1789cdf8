"""The host's own Debian release and mirror: the defaults of --ve-base-release and --ve-mirror.

Reads /etc/os-release and the apt sources, one-line (/etc/apt/sources.list, *.list) and
deb822 (/etc/apt/sources.list.d/*.sources) alike. Only reads; imports nothing of the engine.
"""

from __future__ import annotations

import glob
import os

OS_RELEASE = "/etc/os-release"
SOURCES_LIST = "/etc/apt/sources.list"
SOURCES_DIR = "/etc/apt/sources.list.d"


def host_codename(os_release: str = OS_RELEASE) -> str | None:
    """VERSION_CODENAME of the host (e.g. bookworm), or None when it names none."""
    try:
        with open(os_release) as handle:
            for line in handle:
                key, _, value = line.strip().partition("=")
                if key == "VERSION_CODENAME" and value.strip('"'):
                    return value.strip('"')
    except FileNotFoundError:
        return None
    return None


def _one_line_entries(text: str) -> list[tuple[str, list[str]]]:
    """`deb [opts] URI SUITE COMPONENTS...` -> (URI, [SUITE])."""
    entries = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        words = words[1:]
        if words[0].startswith("["):
            # Options in brackets may hold spaces: skip up to the closing bracket.
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            entries.append((words[0], [words[1]]))
    return entries


def _deb822_entries(text: str) -> list[tuple[str, list[str]]]:
    """Stanzas with `Types: deb`, `URIs:` and `Suites:` -> (URI, SUITES) for each URI."""
    entries = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        entries += [(uri, suites) for uri in fields.get("uris", "").split()]
    return entries


def apt_entries(sources_list: str = SOURCES_LIST, sources_dir: str = SOURCES_DIR) -> list[tuple[str, list[str]]]:
    """Every `deb` source of the host, in apt's reading order."""
    entries = []
    files = [sources_list] if os.path.isfile(sources_list) else []
    files += sorted(glob.glob(os.path.join(sources_dir, "*.list")) + glob.glob(os.path.join(sources_dir, "*.sources")))
    for path in files:
        try:
            with open(path, errors="replace") as handle:
                text = handle.read()
        except OSError:
            continue
        entries += _deb822_entries(text) if path.endswith(".sources") else _one_line_entries(text)
    return entries


def host_mirror(release: str | None, sources_list: str = SOURCES_LIST, sources_dir: str = SOURCES_DIR) -> str | None:
    """The mirror the host's apt uses for `release` itself (not -security or -updates).

    Falls back to the first plain-suite mirror of any release, since a Debian mirror
    serves every release; None when the host has no apt source at all.
    """
    entries = apt_entries(sources_list, sources_dir)
    for uri, suites in entries:
        if release in suites:
            return uri.rstrip("/")
    for uri, suites in entries:
        if any("-" not in suite and "/" not in suite for suite in suites):
            return uri.rstrip("/")
    return None
