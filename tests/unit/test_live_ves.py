"""fleet.live_ves: which VEs' LXC monitors still listen, read from /proc/net/unix."""

from __future__ import annotations

import socket

from pytest_lxcexp.engine.fleet import live_ves
from pytest_lxcexp.engine.storage import Layout


def _listen(path: str) -> socket.socket:
    """An abstract socket named like a liblxc monitor's command socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("\0" + path)
    sock.listen()
    return sock


def test_only_listening_ves_are_live_even_in_a_root_with_spaces():
    layout = Layout("/tmp/lxcexp unit live")
    with _listen(f"{layout.root}/ve2/command"), _listen(f"{layout.root}/ve3/command"):
        assert live_ves(layout, range(1, 5)) == [2, 3]
    assert live_ves(layout, range(1, 5)) == []


def test_a_root_too_long_for_a_plain_socket_name_cannot_tell():
    layout = Layout("/tmp/" + "x" * 100)
    assert live_ves(layout, [1]) is None
