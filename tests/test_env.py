"""env.doctor(): what it reports, the fixes it suggests, and its exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from course_utils import env


def test_doctor_reports_every_item(capsys):
    code = env.doctor()
    out = capsys.readouterr().out
    for label in ("Python", "torch", "torchvision", "torchao", "quantized engines", "CUDA", "threads", "CPU"):
        assert f"  {label}" in out
    for label in ("widgets", "kernel", "cache"):
        assert f"  {label}" in out
    assert "current: " in out and "ipywidgets" in out and "jupyterlab_widgets" in out
    fixes = env.collect().fixes
    assert code == (1 if fixes else 0)
    assert ("What to fix" in out) == bool(fixes)


def test_doctor_command_line_passes_in_the_course_environment():
    """`make test` runs after `make setup`, so in this venv there must be nothing to fix."""
    proc = subprocess.run(
        [sys.executable, "-m", "course_utils", "doctor"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Nothing to fix" in proc.stdout


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2.14.1", None),
        ("2.14.1+cu130", None),
        ("2.6.0+cpu", None),
        (
            "2.5.1",
            "torch 2.5.1 is outside the tested range >=2.6,<2.15: pip install torch==2.14.1 torchvision==0.29.1",
        ),
        ("2.15.0", "torch 2.15.0 is outside the tested range >=2.6,<2.15: pip install torch==2.14.1"),
        (None, "torch is not installed: pip install torch==2.14.1"),
    ],
)
def test_torch_version_fix(version, expected):
    fix = env.torch_version_fix(version, ">=2.6,<2.15")
    if expected is None:
        assert fix is None
    else:
        assert fix.startswith(expected)


def test_declared_torch_range_comes_from_the_package_metadata():
    spec = env._declared_range("torch", "fallback")
    assert spec != "fallback"
    assert env._in_range("2.14.1", spec) and not env._in_range("2.5.0", spec)


def test_out_of_range_torch_is_a_fix(monkeypatch, capsys):
    real = env._version
    monkeypatch.setattr(env, "_version", lambda d: "2.5.0" if d == "torch" else real(d))
    assert any("torch 2.5.0 is outside the tested range" in f for f in env.collect().fixes)
    assert env.doctor() == 1
    assert "What to fix" in capsys.readouterr().out


def test_missing_kernel_and_widgets_are_fixes(monkeypatch):
    real = env._version
    monkeypatch.setattr(env, "_kernel_dir", lambda: None)
    monkeypatch.setattr(env, "_version", lambda d: None if d == "jupyterlab_widgets" else real(d))
    report = env.collect()
    assert "The Jupyter kernel 'compression-course' is not registered: run `make setup`." in report.fixes
    assert any(f.startswith("jupyterlab_widgets missing") and "make setup" in f for f in report.fixes)
    assert ("kernel", "'compression-course' NOT REGISTERED") in report.info


@pytest.mark.parametrize(
    ("flags", "bf16"),
    [
        ("fpu sse avx2 avx512f avx512_bf16", True),
        ("fpu amx_bf16 amx_tile", True),
        ("fpu sse avx2 avx512f", False),
    ],
)
def test_cpu_info_reads_bf16_flags(tmp_path, flags, bf16):
    f = tmp_path / "cpuinfo"
    f.write_text(f"processor\t: 0\nmodel name\t: Test CPU 3000\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert env.cpu_info(f) == ("Test CPU 3000", bf16)


def test_cpu_info_without_proc(tmp_path):
    name, bf16 = env.cpu_info(tmp_path / "absent")
    assert bf16 is None and name
