"""--ve-unprivileged: VEs in user namespaces, root inside mapped to an unprivileged range outside.

The range is root's subordinate ids (/etc/subuid, /etc/subgid), as for any LXC
container that root starts unprivileged. The VE's root then is, say, uid 100000 on
the host: the base root filesystem copied into the tmpfs and each VE's overlay upper
directory must belong to that uid, or the VE could not write its own log.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from .config import ConfigError

SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
# A VE needs ids 0..65535 inside: what a distribution's files use.
IDS_NEEDED = 65536
OPTION = "--ve-unprivileged"


@dataclass(frozen=True)
class IdMap:
    uid_start: int
    gid_start: int
    count: int

    def config_lines(self) -> list[str]:
        return [f"lxc.idmap = u 0 {self.uid_start} {self.count}", f"lxc.idmap = g 0 {self.gid_start} {self.count}"]

    def host_uid(self, uid: int) -> int:
        return self.uid_start + uid

    def host_gid(self, gid: int) -> int:
        return self.gid_start + gid


def _range(path: str, user: str) -> tuple[int, int] | None:
    """The first range of at least IDS_NEEDED ids that `user` owns in a subid file."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return None
    try:
        uid = str(pwd.getpwnam(user).pw_uid)
    except KeyError:
        uid = user
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, uid):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count >= IDS_NEEDED:
            return start, IDS_NEEDED
    return None


def root_id_map(user: str = "root") -> IdMap:
    """Root's subordinate id ranges; a usage error naming the fix when there are none."""
    uids, gids = _range(SUBUID, user), _range(SUBGID, user)
    missing = [path for path, found in ((SUBUID, uids), (SUBGID, gids)) if found is None]
    if uids is None or gids is None:
        raise ConfigError(
            OPTION,
            f"{user} owns no range of {IDS_NEEDED} subordinate ids in {' and '.join(missing)}; add one, e.g.: "
            f"usermod --add-subuids 1000000-1065535 --add-subgids 1000000-1065535 {user}",
        )
    return IdMap(uid_start=uids[0], gid_start=gids[0], count=IDS_NEEDED)


def shift_tree(top: str, idmap: IdMap) -> int:
    """Give every file under `top` (symlinks themselves, never their targets) to the mapped ids.

    Returns how many entries were changed. chown clears setuid/setgid bits, so the mode is
    put back afterwards for everything but symlinks.
    """
    changed = 0
    for directory, dirs, files in os.walk(top, followlinks=False):
        for name in [".", *dirs, *files]:
            path = os.path.join(directory, name) if name != "." else directory
            info = os.lstat(path)
            if info.st_uid >= idmap.count or info.st_gid >= idmap.count:
                continue  # already shifted (or an id the VE cannot see anyway)
            os.lchown(path, idmap.host_uid(info.st_uid), idmap.host_gid(info.st_gid))
            if not os.path.islink(path):
                os.chmod(path, info.st_mode & 0o7777)
            changed += 1
    return changed


def own_by_mapped_root(path: str, idmap: IdMap) -> None:
    """A directory the VE writes into (its overlay upper dir) belongs to its root."""
    os.lchown(path, idmap.host_uid(0), idmap.host_gid(0))
