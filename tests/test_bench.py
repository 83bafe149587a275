"""Smoke test of the bench plumbing with tiny settings (not a timed test: no timing is asserted)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils import bench


def _notebook(path: Path, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.mark.slow
def test_bench_quick_writes_report_plot_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "course", tmp_path / "reports"
    _notebook(root / "notebooks" / "01_ok.ipynb", "x = 1 + 1\nprint(x)")
    _notebook(root / "solutions" / "01_broken.ipynb", "raise ValueError('boom')")
    argv = [
        "--quick",
        "--rounds",
        "1",
        "--min-run-time",
        "0.05",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--train-limit",
        "128",
    ]
    argv += ["--root", str(root), "--out", str(out), "--skip-grading", "--no-progress", "--no-compile"]
    assert bench.main(argv) == 0

    printed = capsys.readouterr().out
    assert f"torch {torch.__version__}" in printed and "threads" in printed
    md = (out / "benchmarks.md").read_text()
    for variant in ("fp32", "dynamic int8", "static int8", "QAT int8", "50% channels", "90% unstructured"):
        assert f"| **{variant}** |" in md, variant
    assert "| notebooks/01_ok.ipynb |" in md and "| ok |" in md
    assert "| solutions/01_broken.ipynb |" in md and "failed: " in md
    assert "Not timed in this run (`--skip-grading`)" in md
    assert "1-min load average" in md and "CPU-minutes" in md
    # the decomposition: every fp32 baseline and int8 path in one interleaved table, per thread count
    assert "## Where the speed comes from" in md and "### 1 thread" in md
    for row in (
        "fp32 eager NCHW",
        "fp32 BN folded",
        "fp32 BN folded, channels_last",
        "int8 eager (static PTQ)",
    ):
        assert f"| {row}" in md, row
    assert "| fp32 torch.compile | n/a |" in md and "compile=False" in md  # says why it is missing
    assert "(best fp32)" in md and "× vs best fp32" in md and "load average" in md
    assert re.search(r"\*\*int8 eager \(static PTQ\): [\d.]+× (faster|slower) than the best fp32\*\*", md)
    assert "% ± " in md  # accuracy with its standard error
    assert "![benchmark plot](benchmarks.png)" in md
    assert (out / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "CPU capability" in md and torch.backends.cpu.get_cpu_capability() in md

    data = json.loads((out / "benchmarks.json").read_text())
    models = {m["name"]: m for m in data["models"]}
    assert models["fp32"]["size_ratio"] == 1.0
    assert models["static int8"]["size_ratio"] > 3  # int8 weights: about 4× fewer bytes
    assert models["50% channels"]["params"] < models["fp32"]["params"] / 1.8  # channels really removed
    assert models["90% unstructured"]["nonzero"] < 0.2 * models["90% unstructured"]["params"]
    assert models["fp32"]["accuracy"] > 0.9
    assert models["static int8"]["accuracy"] > models["fp32"]["accuracy"] - 0.05  # calibrated on 128 images
    for m in models.values():  # fine-tuned variants saw only 2 batches here: no accuracy claim
        assert 0.0 <= m["accuracy"] <= 1.0 and all(v > 0 for v in m["latency_ms"].values())
        assert set(m["speedup"]) == set(m["latency_ms"]) and m["timed_as"]
    speed1 = data["speed"]["1"]
    best = min(
        (r for r in speed1["rows"] if r["family"] == "fp32" and r["median_ms"]), key=lambda r: r["median_ms"]
    )
    assert speed1["best_fp32"] == best["name"] and best["vs_best_fp32"] == 1.0
    static = next(r for r in speed1["rows"] if r["name"] == "int8 eager (static PTQ)")
    assert models["static int8"]["speedup"]["1"] == pytest.approx(best["median_ms"] / static["median_ms"])
    counted = [t for t in data["targets"] if t["counted"]]
    assert {t["what"].split(" ")[0] for t in counted} >= {"static", "QAT", "50%"}
    assert data["all_targets_met"] == all(t["passed"] for t in counted)


def test_targets_pass_and_fail_at_the_thresholds() -> None:
    def row(name: str, speed1: float, speed2: float, size: float) -> bench.ModelRow:
        r = bench.ModelRow(name, "", 0.9, 1, 1, 1, None, "", {1: 1.0, 2: 1.0})
        r.speedup, r.size_ratio = {1: speed1, 2: speed2}, size
        return r

    rows = [
        row("static int8", 2.0, 0.5, 3.49),
        row("QAT int8", 1.99, 3.0, 3.5),
        row("50% channels", 1.5, 1.0, 2),
    ]
    got = {(t.what, t.counted): t.passed for t in bench.targets(rows)}
    assert got[("static int8 faster than the best fp32 (1 thread)", True)] is True
    assert got[("static int8 faster than the best fp32 (2 threads)", False)] is False  # listed, not counted
    assert got[("QAT int8 faster than the best fp32 (1 thread)", True)] is False
    assert got[("50% channels faster than the best fp32 (1 thread)", True)] is True
    assert got[("static int8 smaller than fp32 (state_dict bytes)", True)] is False
    assert got[("QAT int8 smaller than fp32 (state_dict bytes)", True)] is True


class _Bar:
    def set_postfix_str(self, _s: str) -> None: ...

    def update(self, _n: int = 1) -> None: ...


def test_time_grading_reads_the_graders_csv_and_reports_failures(tmp_path: Path) -> None:
    for folder in ("solutions", "exercises"):
        _notebook(tmp_path / folder / "01_x.ipynb", "pass")
    _notebook(tmp_path / "solutions" / "02_no_exercise.ipynb", "pass")
    assert bench.grading_chapters(tmp_path) == ["01_x"]
    calls = []

    def fake_grader(cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
        calls.append(cmd)
        out = Path(cmd[cmd.index("--out") + 1])
        subs = sorted(p.name for p in Path(cmd[5]).iterdir())
        assert subs == ["blank.ipynb", "solution.ipynb"] and "--jobs" in cmd
        out.mkdir()
        (out / "grades.csv").write_text("student,score,max_score,1.1\nblank,0,3,0\nsolution,3,3,3\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    (row,) = bench.time_grading(["01_x"], tmp_path, _Bar(), runner=fake_grader)
    assert calls[0][2:5] == ["course_utils", "grade", "01_x"]
    assert row.status == "ok" and row.scores == {"blank": "0/3", "solution": "3/3"}
    assert row.submissions == 2 and row.per_submission == pytest.approx(row.seconds / 2)

    def failing(cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(cmd, 2, "", "grade: error: unknown assignment '01_x'.")

    (row,) = bench.time_grading(["01_x"], tmp_path, _Bar(), runner=failing)
    assert row.status.startswith("grader exited 2: grade: error: unknown assignment") and row.scores == {}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch", "0"], "--batch must be between 1 and 359"),
        (["--epochs", "0"], "--epochs >= 1"),
        (["--train-limit", "10"], "--train-limit >= 64"),
        (["--root", "/nonexistent-course"], "has no notebooks/ or solutions/"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv: list[str], message: str, capsys) -> None:
    assert bench.main(argv) == 2
    assert message in capsys.readouterr().err
