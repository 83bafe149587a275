"""The per-submission sandbox: bubblewrap namespaces, a cgroup, and a private writable box.

``bwrap_argv(box, ...)`` is the command prefix that runs the student's kernel:

- its own user, pid, network, ipc, uts, cgroup and mount namespaces (``--unshare-all``), no
  network, ``--die-with-parent`` and ``--new-session`` (no terminal injection), no nested user
  namespaces, all capabilities dropped;
- a minimal root: ``/usr`` and the dynamic-loader part of ``/etc``, the Python installation and
  the venv, all read-only; the checkout, ``$HOME``, the model cache, the other submissions and
  ``--out`` are simply absent; a fresh ``/proc`` (only the sandbox's processes), a minimal
  ``/dev``, an empty ``/tmp``;
- one writable directory, the *box* (``work/box``, a size-limited tmpfs when the grader runs as
  root), and the read-only kernel-side package (``kernelpkg.py``);
- an environment built from an allowlist (``--clearenv``): nothing of the grader's environment.

``Cgroup`` bounds memory (the kernel and every child, shared mappings and tmpfs included) and the
number of processes, and kills every process in it at the end; cgroup v2 when delegated, else v1
controllers (``memory``, ``pids``, ``freezer``), else only the rlimits set by ``launcher.py``.
When bubblewrap's sandbox init (pid 1 of the namespace) dies, the kernel kills every process in
the namespace, so nothing a submission starts outlives its grading.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

__all__ = [
    "MODES",
    "Cgroup",
    "SandboxUnavailable",
    "bwrap_argv",
    "bwrap_problem",
    "cgroup_backend",
    "choose",
    "mount_box",
    "unmount_box",
]

MODES = ("auto", "bwrap", "none")
_ETC = (  # what the loader, Python, matplotlib and fontconfig read; no shadow, no ssh, no pip.conf
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
    "hosts",
    "fonts",
    "alternatives",
    "mime.types",
    "ssl",
)
_TOP = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")

UNPROTECTED = (
    "--sandbox none: student code runs as your user, with your files, your network and your "
    "processes. It can read the answers (course_utils.specs), the model cache and other "
    "students' notebooks, rewrite grades.csv after grading, and signal the grader. Only the "
    "rlimits (memory, file size), the timeouts and the judging process still apply."
)


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot start here (not installed, user namespaces disabled, ...)."""


@functools.lru_cache(maxsize=1)
def bwrap_problem() -> str | None:
    """None when ``bwrap`` can start a sandbox here, else a one-line reason."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (`bwrap`) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    probe = [*_namespace_args(), *_root_binds(), "--proc", "/proc", "--dev", "/dev", "--", "/bin/true"]
    try:
        out = subprocess.run([exe, *probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bwrap did not run ({type(err).__name__})"
    if out.returncode != 0:
        return f"bwrap cannot create namespaces here: {out.stderr.strip()[:200]}"
    return None


def choose(mode: str) -> tuple[bool, str]:
    """``(use bwrap, note)`` for ``--sandbox MODE``; raises ``SandboxUnavailable`` for ``bwrap``."""
    if mode not in MODES:
        raise ValueError(f"sandbox mode must be one of {MODES}, not {mode!r}")
    if mode == "none":
        return False, "not sandboxed (--sandbox none)"
    problem = bwrap_problem()
    if problem is None:
        return True, f"sandboxed with bubblewrap; limits: {cgroup_backend()}"
    if mode == "bwrap":
        raise SandboxUnavailable(problem)
    return False, f"NOT sandboxed: {problem} (--sandbox auto fell back to no sandbox)"


def _namespace_args() -> list[str]:
    return [
        "--unshare-all",  # user, pid, net, ipc, uts, cgroup (+ mount)
        "--unshare-user",  # also when the grader runs as root
        "--disable-userns",  # no nested user namespace to regain capabilities
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
    ]


def _root_binds() -> list[str]:
    args: list[str] = []
    for top in _TOP:
        p = Path("/") / top
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
    for name in _ETC:
        p = Path("/etc") / name
        if p.exists():
            args += ["--ro-bind", str(p), str(p)]
    cpu = "/sys/devices/system/cpu"  # topology and caches, read by torch/OpenVINO/onnxruntime
    return [*args, "--ro-bind-try", cpu, cpu]


def _python_dirs() -> list[Path]:
    """The Python installation and the venv (read-only in the sandbox)."""
    dirs = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    dirs |= {Path(p).resolve() for p in sys.path if p and "-packages" in p and Path(p).is_dir()}
    keep = []
    for d in sorted(dirs, key=lambda p: len(p.parts)):  # drop dirs inside another one
        if not any(d.is_relative_to(k) for k in keep) and not str(d).startswith("/usr/"):
            keep.append(d)
    return keep


def bwrap_argv(
    box: Path,
    env: dict[str, str],
    ro: list[Path] = (),  # type: ignore[assignment]
    chdir: Path | None = None,
    rw_box: bool = True,
    tmp_mb: int = 0,
) -> list[str]:
    """The ``bwrap ... --`` prefix for a command run in the sandbox around ``box``.

    ``ro`` paths are bound read-only at the same path (e.g. the kernel-side package, the
    connection file's folder); ``box`` is bound writable (read-only with ``rw_box=False``) at the
    same path, so file names and unix sockets mean the same inside and outside. ``tmp_mb``
    bounds the sandbox's ``/tmp`` (a tmpfs; its pages also count against the cgroup's memory).
    """
    exe = shutil.which("bwrap") or "bwrap"
    args = [exe, *_namespace_args(), *_root_binds()]
    sys_prefix = Path(sys.prefix)
    for d in _python_dirs():
        if not str(d).startswith("/tmp/"):  # those come back after the empty /tmp below
            args += ["--ro-bind", str(d), str(d)]
    if sys_prefix != sys_prefix.resolve():  # a venv reached through a symlink
        args += ["--ro-bind", str(sys_prefix.resolve()), str(sys_prefix)]
    size = ["--size", str(tmp_mb * 2**20)] if tmp_mb else []
    args += ["--proc", "/proc", "--dev", "/dev", *size, "--tmpfs", "/tmp"]
    args += ["--size", str(2**20), "--tmpfs", "/run", "--size", str(2**20), "--tmpfs", "/var/tmp"]
    for p in _python_dirs():  # a venv under /tmp (tests): bring it back after the empty /tmp
        if str(p).startswith("/tmp/"):
            args += ["--ro-bind", str(p), str(p)]
    for p in ro:
        args += ["--ro-bind", str(p), str(p)]
    args += ["--bind" if rw_box else "--ro-bind", str(box), str(box)]
    args += ["--clearenv"]
    for k, v in env.items():
        args += ["--setenv", k, v]
    if chdir is not None:
        args += ["--chdir", str(chdir)]
    return [*args, "--"]


# ---- the box: a size-limited tmpfs when we may mount ---------------------------------------------


def mount_box(box: Path, size_mb: int) -> bool:
    """Mount a ``size_mb`` tmpfs on ``box`` (root only); False when not possible (disk is used)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755,nosuid,nodev", "tmpfs", str(box)],
        capture_output=True,
    )
    return r.returncode == 0


def unmount_box(box: Path) -> None:
    subprocess.run(["umount", "-l", str(box)], capture_output=True)


# ---- cgroups: memory, number of processes, kill all -------------------------------------------------

_V1 = Path("/sys/fs/cgroup")


def _own_v1(controller: str) -> Path | None:
    """Our cgroup directory in v1 ``controller``'s hierarchy (None when absent or read-only)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, rel = line.split(":", 2)
            if controller in ctrls.split(","):
                d = _V1 / controller / rel.lstrip("/")
                return d if os.access(d, os.W_OK) else None
    except OSError:
        return None
    return None


def _own_v2() -> Path | None:
    """Our cgroup v2 directory when it can host children with memory and pids controllers."""
    root = _V1 if (_V1 / "cgroup.controllers").exists() else None
    if root is None:
        return None
    try:
        rel = next(
            ln[3:] for ln in Path("/proc/self/cgroup").read_text().splitlines() if ln.startswith("0::")
        )
        d = root / rel.lstrip("/")
        ctrls = (d / "cgroup.controllers").read_text().split()
        if {"memory", "pids"} <= set(ctrls) and os.access(d, os.W_OK):
            return d
    except (OSError, StopIteration):
        return None
    return None


@functools.lru_cache(maxsize=1)
def cgroup_backend() -> str:
    """``cgroup v2``, ``cgroup v1`` or ``rlimits only`` (what bounds the sandbox here)."""
    if _own_v2() is not None:
        return "cgroup v2 (memory.max, pids.max, cgroup.kill)"
    if all(_own_v1(c) is not None for c in ("memory", "pids", "freezer")):
        return "cgroup v1 (memory.limit_in_bytes, pids.max, freezer + SIGKILL)"
    return "rlimits only (RLIMIT_DATA, RLIMIT_FSIZE, RLIMIT_NPROC not set; no cgroup available)"


class Cgroup:
    """A cgroup for one sandbox: ``procs_files`` are written with the launcher's pid."""

    def __init__(self, memory_mb: int, pids: int = 256) -> None:
        name = f"course-grade-{uuid.uuid4().hex[:12]}"
        self.dirs: list[Path] = []
        self.version = 0
        v2 = _own_v2()
        try:
            if v2 is not None:
                d = v2 / name
                d.mkdir()
                self.dirs, self.version = [d], 2
                (d / "memory.max").write_text(str(memory_mb * 2**20))
                (d / "memory.swap.max").write_text("0") if (d / "memory.swap.max").exists() else None
                (d / "pids.max").write_text(str(pids))
            elif cgroup_backend().startswith("cgroup v1"):
                self.version = 1
                for c in ("memory", "pids", "freezer"):
                    base = _own_v1(c)
                    assert base is not None
                    d = base / name
                    d.mkdir()
                    self.dirs.append(d)
                mem, pid = self.dirs[0], self.dirs[1]
                (mem / "memory.limit_in_bytes").write_text(str(memory_mb * 2**20))
                sw = mem / "memory.memsw.limit_in_bytes"
                if sw.exists():
                    try:
                        sw.write_text(str(memory_mb * 2**20))
                    except OSError:
                        pass
                (pid / "pids.max").write_text(str(pids))
        except OSError:
            self.remove()
            self.dirs, self.version = [], 0

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def _pids(self) -> list[int]:
        out: set[int] = set()
        for d in self.dirs:
            try:
                out |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return sorted(out)

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (frozen first in v1, so none can fork away)."""
        if self.version == 2:
            try:
                (self.dirs[0] / "cgroup.kill").write_text("1")
            except OSError:
                for pid in self._pids():
                    _kill(pid)
        elif self.version == 1:
            freezer = self.dirs[2] / "freezer.state"
            try:
                freezer.write_text("FROZEN")
            except OSError:
                pass
            for pid in self._pids():
                _kill(pid)
            try:
                freezer.write_text("THAWED")  # killed tasks only die once thawed
            except OSError:
                pass
        deadline = time.monotonic() + 5
        while self._pids() and time.monotonic() < deadline:
            time.sleep(0.02)

    def remove(self) -> None:
        for d in reversed(self.dirs):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
        self.dirs = []

    def close(self) -> None:
        self.kill()
        self.remove()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
