"""Copying a call's workspace in and out of its sandbox: regular files and directories only.

Standard library only: :mod:`swarm.tools.sandbox` prepends this source, like the boot's, to
:mod:`swarm.tools.sandbox_server`'s when it starts the server (swarm is not importable there).
"""

from __future__ import annotations

import contextlib
import os
import stat


def _copy_file(src: str, dst: str, mode: int) -> None:
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            while os.sendfile(dfd, sfd, None, 1 << 20):
                pass
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def copy_tree(
    src: str, dst: str, file_mode: int, dir_mode: int, unchanged: dict[str, tuple[int, int]] | None = None
) -> dict[str, tuple[int, int]]:
    """Regular files and directories only: symlinks, devices and fifos are never followed or copied.

    Files whose (size, mtime) in ``src`` equal ``unchanged``'s are skipped, so the worker does not
    see (and hash) every file as written again. Returns the (size, mtime) of the copies in ``dst``.
    """
    copied: dict[str, tuple[int, int]] = {}
    for root, _dirs, files in os.walk(src, followlinks=False):
        rel = os.path.relpath(root, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        if rel != ".":
            with contextlib.suppress(FileExistsError):
                os.mkdir(target, dir_mode)
        for name in files:
            path = os.path.join(root, name)
            key = os.path.normpath(os.path.join(rel, name))
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if unchanged is not None and unchanged.get(key) == (st.st_size, st.st_mtime_ns):
                    continue
                out = os.path.join(target, name)
                _copy_file(path, out, file_mode)
                copied_st = os.stat(out)
                copied[key] = (copied_st.st_size, copied_st.st_mtime_ns)
            except OSError:
                pass  # a file the code made unreadable or that vanished is simply not kept
    return copied
