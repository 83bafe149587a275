"""Grader pieces that need no kernel: parsing, scoring, reports, CLI misuse, memory limits."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from fixtures.grading_spec import EXERCISES
from fixtures.grading_subs import SPEC, notebook

from course_utils.exercise import CHAPTERS, chapter_exercises
from course_utils.grading.cli import main as grade
from course_utils.grading.report import atomic_write, exercise_output, feedback_html, results_json
from course_utils.grading.results import CaseResult, ExerciseResult, SubmissionResult, aggregate
from course_utils.grading.runner import grade_notebook_bytes


def test_aggregate_partial_credit_and_worst_status():
    ex = ExerciseResult("0.3", "t", 2.0)
    ex.cases = [
        CaseResult(1, False, "passed"),
        CaseResult(2, False, "failed"),
        CaseResult(1, True, "timeout"),
    ]
    aggregate(ex)
    assert ex.score == round(2 / 3, 2) and ex.status == "timeout"
    ex.cases = [CaseResult(i, False, "passed") for i in range(4)]
    assert aggregate(ex).status == "passed" and ex.score == 2.0


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"\xff\xfe\x00binary", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a Jupyter notebook"),
        (b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "no code cells"),
    ],
)
def test_unreadable_submissions_get_missing_without_a_kernel(data, reason):
    t0 = time.monotonic()
    r = grade_notebook_bytes("x", data, str(SPEC))
    assert time.monotonic() - t0 < 5  # no kernel was started
    assert [e.status for e in r.exercises] == ["missing"] * 3 and r.score == 0
    assert all(reason in e.message for e in r.exercises)


def test_feedback_escapes_student_text_and_shortens_hidden_cases():
    ex = ExerciseResult("0.1", "add", 1.0)
    ex.cases = [
        CaseResult(1, False, "error", "your code raised ValueError: <script>alert(1)</script>"),
        CaseResult(2, True, "failed", "result: got 1, expected 2\nsecond line with details " + "y" * 500),
    ]
    aggregate(ex)
    r = SubmissionResult("<b>eve</b>", str(SPEC), [ex])
    page = feedback_html(r)
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>eve</b>" not in page
    text = exercise_output(ex)
    assert "hidden case 2 failed: result: got 1, expected 2" in text and "second line" not in text
    res = json.loads(json.dumps(results_json(r)))
    assert res["tests"][0]["status"] == "failed" and res["extra_data"]["statuses"] == {"0.1": "error"}
    assert res["tests"][0]["output"].startswith("[error] ")


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a" / "grades.csv"
    atomic_write(p, "one\n")
    atomic_write(p, "two\n")
    assert p.read_text() == "two\n" and sorted(x.name for x in p.parent.iterdir()) == ["grades.csv"]


def _misuse(capsys, args) -> str:
    rc = grade(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("grade: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_misuse_is_one_line_and_exit_2(tmp_path, capsys):
    sub = tmp_path / "alice.ipynb"
    sub.write_text("{}")
    out = str(tmp_path / "out")
    assert "Unknown assignment '42'" in _misuse(capsys, ["42", str(sub), "--out", out])
    assert "no such file" in _misuse(capsys, ["1", str(tmp_path / "nope.ipynb"), "--out", out])
    (tmp_path / "empty").mkdir()
    assert "no submissions" in _misuse(capsys, ["1", str(tmp_path / "empty"), "--out", out])
    assert "cannot write to --out" in _misuse(capsys, ["1", str(sub), "--out", str(sub)])
    assert "Spec file" in _misuse(capsys, [str(tmp_path / "none.py"), str(sub), "--out", out])
    empty = [n for n in CHAPTERS if not chapter_exercises(n)]
    if empty:
        assert "no exercises yet" in _misuse(capsys, [str(empty[0]), str(sub), "--out", out])


def test_memory_limit_lets_torch_import_and_stops_big_allocations():
    """RLIMIT_DATA (what the launcher sets) vs this CUDA build of torch: measured, not assumed."""
    code = (
        "from course_utils.grading.launcher import apply_limits; apply_limits(1024, 64)\n"
        "import torch; x = torch.randn(256, 256) @ torch.randn(256, 256)\n"
        "try:\n    torch.empty(2 * 2**30, dtype=torch.uint8); print('allocated')\n"
        "except RuntimeError as e:\n    print('refused' if 'allocate' in str(e) else e)\n"
        "try:\n    b = [bytearray(10**8) for _ in range(20)]; print('allocated')\n"
        "except MemoryError:\n    print('MemoryError')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["refused", "MemoryError"]


def test_spec_file_assignment_loads_the_test_exercises():
    from course_utils.grading.assignment import find_exercise, load_assignment

    name, exercises = load_assignment(str(SPEC))
    assert [e.id for e in exercises] == [e.id for e in EXERCISES] and name.endswith("grading_spec.py")
    assert find_exercise(name, "0.2").target == "scale_rows"
    assert notebook().cells  # the builder used by the batch tests works


def test_student_ids_are_safe_folder_names_and_clashes_are_reported(tmp_path):
    from course_utils.grading.cli import collect_submissions, safe_student_id
    from course_utils.grading.report import csv_cell

    assert safe_student_id("grades.csv") == "student-grades.csv"
    assert safe_student_id("..") == "student" and safe_student_id("a/../b") == "a_.._b"
    assert safe_student_id("\udcff\udcfeb") == "_udcff_udcfeb" and safe_student_id("Zoë") == "Zoë"
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("bob") == "bob"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "alice.ipynb").write_text("{}")
    notes: list[str] = []
    items = collect_submissions([str(tmp_path / "a"), str(tmp_path / "b")], notes)
    assert [s for s, _ in items] == ["alice", "alice~2"] and "graded as 'alice~2'" in notes[0]


def test_result_files_are_read_only_when_regular_and_small(tmp_path):
    import os

    from course_utils.grading import safefs
    from course_utils.grading.judge import load_result

    (tmp_path / "ok.pt").write_bytes(b"data")
    os.mkfifo(tmp_path / "fifo.pt")
    (tmp_path / "link.pt").symlink_to("/etc/passwd")
    (tmp_path / "d").symlink_to("/etc")
    assert safefs.read_regular(tmp_path, "ok.pt", 10) == b"data"
    for rel in ("fifo.pt", "link.pt", "d/passwd"):  # never blocks, never follows a link
        with pytest.raises(OSError):
            safefs.read_regular(tmp_path, rel, 10)
    with pytest.raises(OSError):
        safefs.read_regular(tmp_path, "ok.pt", 3)
    safefs.write_new(tmp_path, "new/inputs.pt", b"x")  # never writes through a link
    with pytest.raises(OSError):
        safefs.write_new(tmp_path, "d/evil", b"x")
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", bytes(300 * 2**20))
    assert len(buf.getvalue()) < 2**20 and load_result(buf.getvalue())["kind"] == "too_big"


def test_flags_come_from_the_syntax_tree_per_exercise():
    from course_utils.exercise import get_exercise
    from course_utils.grading.flags import exercise_flags, notebook_flags

    ex = get_exercise("1.2")
    for src in (
        "def l1_unstructured_mask(w, amount):\n    return prune.l1_unstructured(m, 'weight', amount)",
        "from torch.nn.utils.prune import l1_unstructured as f",
        "def f(w, a):\n    return getattr(prune, 'l1_' + 'unstructured')(m, 'weight', a)",
    ):
        assert any("torch.nn.utils.prune.l1_unstructured" in f for f in exercise_flags(ex, [("cell 3", src)]))
    assert exercise_flags(ex, [("cell 3", "def f(w, a):\n    return w.abs().flatten().topk(3)")]) == []
    split = "m = __import__('course_' + 'utils.sp' + 'ecs.ch01')\nk = __import__(''.join(['course_utils', '.gra', 'ding']))"
    flags = notebook_flags([("cell 2", split)])
    assert any("specs" in f for f in flags) and any("grader" in f for f in flags)
    assert notebook_flags([("cell 2", "import torch\nx = torch.ones(3)")]) == []


def test_without_bubblewrap_the_grader_refuses_unless_told(tmp_path, capsys, monkeypatch):
    from course_utils.grading import sandbox

    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap (`bwrap`) is not installed")
    sub = tmp_path / "alice.ipynb"
    sub.write_bytes(b"")  # unreadable: graded without a kernel
    out = tmp_path / "out"
    err = _misuse(capsys, [str(SPEC), str(sub), "--out", str(out)])
    assert "not installed" in err and "--no-sandbox" in err and not (out / "grades.csv").exists()
    assert grade([str(SPEC), str(sub), "--out", str(out), "--no-sandbox", "--quiet"]) == 0
    assert "student code runs as your user" in capsys.readouterr().err
    assert grade([str(SPEC), str(sub), "--out", str(out), "--sandbox", "auto", "--quiet"]) == 0
    assert "NOT sandboxed" in capsys.readouterr().err
    assert (out / "grades.csv").read_text().splitlines()[1].startswith("alice,0,5")


def test_a_measuring_compare_shows_its_numbers_on_passed_cases():
    """The capstone's compare returns its report-card line; the student sees it though it passed."""
    import io

    import torch

    from course_utils.grading.judge import judge_bytes

    buf = io.BytesIO()
    torch.save({"ok": True, "value": torch.tensor([1.0])}, buf)

    def measuring(got, expected, inputs):
        return "size: 8.62× smaller than fp32 (target ≥ 4×)"

    rec = judge_bytes(measuring, buf.getvalue(), None, {}, False, 1, 512)
    assert rec["status"] == "passed" and "8.62×" in rec["message"]
    silent = judge_bytes(lambda g, e, i: None, buf.getvalue(), None, {}, False, 2, 512)
    assert silent == {**silent, "status": "passed", "message": ""}
    ex = ExerciseResult(
        "8.3", "capstone", 3.0, "passed", 3.0, cases=[CaseResult(**rec), CaseResult(**silent)]
    )
    out = exercise_output(ex)
    assert "public case 1 passed: size: 8.62× smaller" in out and "case 2" not in out
