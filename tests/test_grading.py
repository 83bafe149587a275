"""The grader on hand-made faulty submissions of a test-only assignment (exercises 0.1-0.3).

One batch grades every submission in ``fixtures/grading_subs.py`` through the CLI with two
jobs; the tests then read ``grades.csv`` / ``results.json`` / ``feedback.html``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from fixtures.grading_subs import SPEC, submissions, write_submissions

from course_utils.grading.cli import main as grade

TIMEOUT = "8"  # per cell / per exercise: small so endless loops are cheap, large for a loaded CI box
NAMES = sorted(submissions())


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    subs = root / "subs"
    expected = write_submissions(subs)
    before = {p.name: _sha(p) for p in subs.iterdir()}
    out = root / "out"
    rc = grade(
        [
            str(SPEC),
            str(subs),
            "--out",
            str(out),
            "--jobs",
            "2",
            "--timeout",
            TIMEOUT,
            "--sandbox",
            "auto",
            "--quiet",
        ]
    )
    return {"rc": rc, "out": out, "subs": subs, "expected": expected, "before": before}


def _results(batch, student: str) -> dict:
    return json.loads((batch["out"] / student / "results.json").read_text())


def test_batch_completes_with_exit_0(batch):
    assert batch["rc"] == 0
    assert sorted(p.name for p in batch["out"].iterdir() if p.is_dir()) == NAMES


@pytest.mark.parametrize("student", NAMES)
def test_status_per_exercise(batch, student):
    res = _results(batch, student)
    assert res["extra_data"]["statuses"] == batch["expected"][student]
    for t in res["tests"]:  # Gradescope sees passed/failed; the finer status opens the output
        st = res["extra_data"]["statuses"][t["number"]]
        assert t["status"] == ("passed" if st == "passed" else "failed")
        assert st in ("passed", "failed") or t["output"].startswith(f"[{st}]")


def test_scores_and_partial_credit(batch):
    score = {s: _results(batch, s)["score"] for s in NAMES}
    assert score["good"] == score["noisy"] == score["reordered"] == 5
    assert score["stub"] == score["cheat"] == score["empty"] == score["not_json"] == 0
    # the other exercises keep their credit when one loops, crashes or blows up memory
    assert score["loop_fn"] == score["memory"] == 3 and score["crash_top"] == 3 and score["chaos"] == 2
    # partial credit per case: 0.3 has 7 cases and the >= version fails only the one with zeros
    t03 = next(t for t in _results(batch, "partial")["tests"] if t["number"] == "0.3")
    assert t03["score"] == round(2 * 6 / 7, 2) and t03["max_score"] == 2


def test_grades_csv_matches_results(batch):
    rows = list(csv.DictReader((batch["out"] / "grades.csv").open()))
    assert list(rows[0]) == ["student", "score", "max_score", "0.1", "0.2", "0.3"]
    assert [r["student"] for r in rows] == NAMES
    for r in rows:
        res = _results(batch, r["student"])
        assert float(r["score"]) == pytest.approx(res["score"])
        assert float(r["max_score"]) == 5
        for t in res["tests"]:
            assert float(r[t["number"]]) == pytest.approx(t["score"])


def test_gradescope_format(batch):
    res = _results(batch, "wrong")
    assert isinstance(res["score"], float) and isinstance(res["tests"], list)
    for t in res["tests"]:
        assert set(t) >= {"name", "score", "max_score", "status", "output"}
        assert t["status"] in ("passed", "failed")
        assert 0 <= t["score"] <= t["max_score"]


def test_submissions_are_never_modified(batch):
    assert {p.name: _sha(p) for p in batch["subs"].iterdir()} == batch["before"]


def test_feedback_explains_public_failures_and_hides_hidden_inputs(batch):
    wrong = _results(batch, "wrong")["tests"][0]["output"]
    assert "public case 1 failed" in wrong and "entries differ" in wrong and "got" in wrong
    partial = _results(batch, "partial")["tests"][2]["output"]
    assert "hidden case 5 failed: result: got int 3, expected int 1." in partial
    for s in NAMES:
        text = (batch["out"] / s / "feedback.html").read_text() + json.dumps(_results(batch, s))
        for secret in ("31337", "HIDDEN_MARKER", "_count_edges", "def _pair", "grading_spec.py\n"):
            assert secret not in text, (s, secret)


def test_messages_name_the_cause(batch):
    out = {s: {t["number"]: t["output"] for t in _results(batch, s)["tests"]} for s in NAMES}
    assert "not implemented" in out["stub"]["0.1"]
    assert "took too long" in out["loop_fn"]["0.2"]
    assert "crashed the kernel" in out["chaos"]["0.1"] and "was skipped" in out["chaos"]["0.2"]
    assert "MemoryError" in out["memory"]["0.2"] and "memory limit" in out["memory"]["0.2"]
    assert "`add` is not defined" in out["structure"]["0.1"]
    assert "SyntaxError" in out["structure"]["0.3"]
    assert "course_utils.exercise.assert_same" in out["oddities"]["0.1"]
    assert "__main__.Box" in out["oddities"]["0.2"]
    assert "not valid JSON" in out["not_json"]["0.1"] and "empty" in out["empty"]["0.1"]
    assert "not a Jupyter notebook" in out["not_a_notebook"]["0.1"]


def test_huge_output_and_stderr_are_harmless(batch):
    page = batch["out"] / "noisy" / "feedback.html"
    assert page.stat().st_size < 20_000  # the 20 MB print never reaches the feedback
    assert "NBVAL" not in page.read_text()


def test_cheater_is_flagged_for_the_instructor(batch):
    flags = _results(batch, "cheat")["extra_data"]["flags"]
    assert any("course_utils.grading" in f for f in flags)
    assert _results(batch, "good")["extra_data"]["flags"] == []


def test_regrading_is_deterministic_and_overwrites_cleanly(batch, tmp_path):
    names = ["partial", "wrong", "cheat"]
    sub = tmp_path / "subs"
    write_submissions(sub, names)
    out = tmp_path / "out"
    for _ in range(2):  # the second run overwrites the first in place
        args = [
            str(SPEC),
            str(sub),
            "--out",
            str(out),
            "--jobs",
            "2",
            "--timeout",
            TIMEOUT,
            "--sandbox",
            "auto",
            "--quiet",
        ]
        assert grade(args) == 0
    for s in names:
        again, first = _results({"out": out}, s), _results(batch, s)
        again.pop("execution_time"), first.pop("execution_time")
        assert again == first
        assert (out / s / "feedback.html").read_text() == (batch["out"] / s / "feedback.html").read_text()
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    assert len((out / "grades.csv").read_text().splitlines()) == 1 + len(names)
