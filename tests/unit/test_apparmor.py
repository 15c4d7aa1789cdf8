"""engine.apparmor: the profile VEs start under (--ve-apparmor) and its preflight check."""

from __future__ import annotations

import pytest

from pytest_lxcexp.engine import apparmor
from pytest_lxcexp.engine.config import ConfigError, build_config

LOADED = {"lxc-container-default", "lxc-container-default-cgns", "lxc-container-default-with-nesting"}


@pytest.mark.parametrize(
    ("choice", "host", "lines"),
    [
        ("auto", True, ["lxc.apparmor.profile = lxc-container-default-cgns"]),
        ("unconfined", True, ["lxc.apparmor.profile = unconfined"]),
        ("generated", True, ["lxc.apparmor.profile = generated"]),
        ("lxc-container-default", True, ["lxc.apparmor.profile = lxc-container-default"]),
        # No AppArmor: liblxc ignores profiles, so none is written.
        ("auto", False, []),
        ("unconfined", False, []),
    ],
)
def test_config_lines(choice: str, host: bool, lines: list[str]) -> None:
    assert apparmor.config_lines(choice, apparmor_host=host) == lines


def test_a_loaded_profile_passes_the_check() -> None:
    for choice in ("auto", "lxc-container-default", "unconfined"):
        apparmor.check(choice, apparmor_host=True, profiles=LOADED)


def test_a_profile_that_is_not_loaded_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        apparmor.check("auto", apparmor_host=True, profiles={"lxc-container-default"})
    assert caught.value.option == "--ve-apparmor"
    assert "lxc-container-default-cgns is not loaded" in caught.value.reason
    assert "apparmor_parser -r /etc/apparmor.d/lxc-containers" in caught.value.reason
    with pytest.raises(ConfigError, match="my-profile is not loaded"):
        apparmor.check("my-profile", apparmor_host=True, profiles=LOADED)


def test_without_apparmor_only_auto_and_unconfined_are_taken() -> None:
    apparmor.check("auto", apparmor_host=False, profiles=set())
    apparmor.check("unconfined", apparmor_host=False, profiles=set())
    for choice in ("generated", "lxc-container-default-cgns"):
        with pytest.raises(ConfigError, match="no AppArmor"):
            apparmor.check(choice, apparmor_host=False, profiles=set())


def test_loaded_profiles_reads_names_with_spaces_and_modes(tmp_path) -> None:
    listing = tmp_path / "profiles"
    listing.write_text("lxc-container-default-cgns (enforce)\n/usr/bin/man (enforce)\nodd name (complain)\n")
    assert apparmor.loaded_profiles(str(listing)) == {"lxc-container-default-cgns", "/usr/bin/man", "odd name"}


@pytest.mark.parametrize("bad", ["", " ", "a b", "x;y", "../x", "a//b"])
def test_bad_profile_names_are_usage_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(apparmor=bad)
    assert caught.value.option == "--ve-apparmor"
