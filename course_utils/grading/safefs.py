"""File access to the sandbox's writable box that student code cannot redirect.

The grader runs outside the sandbox (possibly as root) and the student can replace anything in
the box with a symlink, a FIFO or a huge file. Every path is walked from the box's directory
descriptor one component at a time with ``O_NOFOLLOW``; reads accept only regular files up to a
size cap (opened non-blocking, so a FIFO cannot hang the grader); writes create new files only
(``O_EXCL``), so nothing outside the box is ever written or read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["UnsafePath", "make_dirs", "read_regular", "write_new", "exists"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A component is a symlink, not a directory, not a regular file, or too large."""


def _walk(root: Path, parts: tuple[str, ...], create: bool) -> int:
    fd = os.open(root, _DIR)
    try:
        for name in parts:
            if name in ("", ".", "..") or "/" in name:
                raise UnsafePath(f"bad path component {name!r}")
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                nfd = os.open(name, _DIR, dir_fd=fd)
            except OSError as err:
                raise UnsafePath(f"{name}: not a plain directory ({err.strerror})") from None
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def make_dirs(root: Path, rel: str) -> None:
    """``mkdir -p root/rel`` without following symlinks."""
    os.close(_walk(root, tuple(Path(rel).parts), create=True))


def write_new(root: Path, rel: str, data: bytes) -> None:
    """Create ``root/rel`` (a new regular file; its folders are made) and write ``data``."""
    parts = Path(rel).parts
    dfd = _walk(root, parts[:-1], create=True)
    try:
        try:
            os.unlink(parts[-1], dir_fd=dfd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise UnsafePath(f"{rel} is a directory") from None
        fd = os.open(
            parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd
        )
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    finally:
        os.close(dfd)


def read_regular(root: Path, rel: str, cap: int) -> bytes:
    """The bytes of the regular file ``root/rel`` (``UnsafePath`` if it is anything else or > cap)."""
    parts = Path(rel).parts
    dfd = _walk(root, parts[:-1], create=False)
    try:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        except OSError as err:
            raise UnsafePath(f"{rel}: {err.strerror}") from None
    finally:
        os.close(dfd)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{rel} is not a regular file")
        if st.st_size > cap:
            raise UnsafePath(f"{rel} is {st.st_size / 2**20:.0f} MiB (limit {cap / 2**20:.0f} MiB)")
        data = f.read(cap + 1)
    if len(data) > cap:
        raise UnsafePath(f"{rel} grew past {cap / 2**20:.0f} MiB")
    return data


def exists(root: Path, rel: str) -> bool:
    """True when ``root/rel`` exists as anything (not following a final symlink)."""
    parts = Path(rel).parts
    try:
        dfd = _walk(root, parts[:-1], create=False)
    except OSError:
        return False
    try:
        os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        return True
    except OSError:
        return False
    finally:
        os.close(dfd)
