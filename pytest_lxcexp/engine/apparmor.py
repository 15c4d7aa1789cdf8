"""The AppArmor profile VEs start under (--ve-apparmor), and the preflight's check of it.

On an AppArmor host LXC's default is a profile generated for each container and compiled
by apparmor_parser on every start: 355 s instead of 22 s for 50 VEs in a TCG VM. So by
default VEs start under a fixed profile that Debian's lxc package ships and loads at boot
(`lxc-container-default-cgns`), checked to be loaded before anything is created: an LXC
built into a prefix whose profiles were never loaded is named in the preflight, not found
out by every VE failing to start.

    auto (default)   the shipped profile on an AppArmor host; nothing on a host without
    PROFILE          a loaded profile of the user's choosing
    unconfined       no confinement
    generated        LXC's own per-container profile (compiled at every start)

On a host without AppArmor (liblxc then ignores every profile setting), auto and
unconfined mean nothing, and a named profile or generated is refused: nothing could
confine the VEs as asked.
"""

from __future__ import annotations

import functools
import shutil

from .config import ConfigError

ENABLED_FILE = "/sys/module/apparmor/parameters/enabled"
PROFILES_FILE = "/sys/kernel/security/apparmor/profiles"
DEFAULT_PROFILE = "lxc-container-default-cgns"
OPTION = "--ve-apparmor"


@functools.cache
def host_has_apparmor(enabled_file: str = ENABLED_FILE) -> bool:
    try:
        with open(enabled_file) as handle:
            return handle.read().strip() == "Y"
    except OSError:
        return False


def loaded_profiles(profiles_file: str = PROFILES_FILE) -> set[str]:
    """Names of the loaded profiles (`name (mode)` per line)."""
    try:
        with open(profiles_file) as handle:
            return {line.rsplit(" (", 1)[0] for line in handle if line.strip()}
    except OSError:
        return set()


def profile_for(choice: str, apparmor_host: bool) -> str | None:
    """The value of lxc.apparmor.profile for --ve-apparmor `choice`; None: write no line."""
    if not apparmor_host:
        return None
    return DEFAULT_PROFILE if choice == "auto" else choice


def config_lines(choice: str, apparmor_host: bool | None = None) -> list[str]:
    host = host_has_apparmor() if apparmor_host is None else apparmor_host
    profile = profile_for(choice, host)
    return [] if profile is None else [f"lxc.apparmor.profile = {profile}"]


def check(choice: str, apparmor_host: bool | None = None, profiles: set[str] | None = None) -> None:
    """Raise ConfigError unless VEs can start under `choice` on this host."""
    host = host_has_apparmor() if apparmor_host is None else apparmor_host
    if not host:
        if choice not in ("auto", "unconfined"):
            raise ConfigError(
                OPTION, f"this host has no AppArmor ({ENABLED_FILE} is not Y): nothing can confine the VEs as {choice}"
            )
        return
    if choice == "unconfined":
        return
    if choice == "generated":
        if shutil.which("apparmor_parser") is None:
            raise ConfigError(OPTION, "generated profiles are compiled by apparmor_parser: apt-get install apparmor")
        return
    profile = profile_for(choice, host)
    if profile not in (loaded_profiles() if profiles is None else profiles):
        how = (
            "load LXC's profiles (apparmor_parser -r /etc/apparmor.d/lxc-containers), "
            if choice == "auto"
            else "load it with apparmor_parser, "
        )
        raise ConfigError(
            OPTION, f"AppArmor profile {profile} is not loaded ({PROFILES_FILE}): {how}or choose another one"
        )
