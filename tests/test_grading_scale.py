"""The grader at scale: a process pool that survives a killed worker, and Dask distributed."""

from __future__ import annotations

import json

import pytest
from fixtures.grading_subs import SPEC, notebook, write_submissions

from course_utils.grading.cli import main as grade

KILLER = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)  # kills the grading worker itself"


def _statuses(out, student):
    res = json.loads((out / student / "results.json").read_text())
    return res["extra_data"]["statuses"], res


def test_a_student_killing_the_grading_process_does_not_stop_the_batch(tmp_path):
    """Without the sandbox, where the kill reaches the grading worker (sandboxed, it only
    reaches the kernel's own sandbox: `killer` in test_grading_sandbox.py)."""
    sub = tmp_path / "subs"
    write_submissions(sub, ["good"])
    (sub / "killer.ipynb").write_text(__import__("nbformat").writes(notebook(setup=KILLER)))
    out = tmp_path / "out"
    args = [str(SPEC), str(sub), "--out", str(out), "--jobs", "2", "--timeout", "8", "--no-sandbox"]
    assert grade([*args, "--quiet"]) == 0
    good, _ = _statuses(out, "good")
    assert set(good.values()) == {"passed"}
    killer, res = _statuses(out, "killer")
    assert set(killer.values()) == {"crashed"} and res["score"] == 0
    assert "killed" in res["tests"][0]["output"]


def test_dask_local_cluster_gives_the_same_grades(tmp_path):
    distributed = pytest.importorskip("distributed")
    names = ["good", "wrong", "crash_top"]
    sub = tmp_path / "subs"
    expected = write_submissions(sub, names)
    out = tmp_path / "out"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        args = [str(SPEC), str(sub), "--out", str(out), "--scheduler", cluster.scheduler_address]
        assert grade([*args, "--timeout", "8", "--sandbox", "auto", "--quiet"]) == 0
    for s in names:
        assert _statuses(out, s)[0] == expected[s]
    rows = (out / "grades.csv").read_text().splitlines()
    assert rows[1:] == ["crash_top,3,5,1,2,0", "good,5,5,1,2,2", "wrong,4,5,0,2,2"]


def test_unreachable_scheduler_is_instructor_misuse(tmp_path, capsys):
    sub = tmp_path / "subs"
    write_submissions(sub, ["empty"])
    rc = grade([str(SPEC), str(sub), "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9"])
    assert rc == 2 and "cannot connect to the Dask scheduler" in capsys.readouterr().err


def test_submission_wall_clock_limit_stops_grading_with_timeout(tmp_path):
    import time

    from fixtures.grading_subs import GOOD

    from course_utils.grading.results import Limits
    from course_utils.grading.runner import grade_submission

    nb = notebook({"0.3": GOOD["0.3"] + "\nimport time\ntime.sleep(120)"})
    path = tmp_path / "slow.ipynb"
    path.write_text(__import__("nbformat").writes(nb))
    t0 = time.monotonic()
    r = grade_submission(path, str(SPEC), Limits(cell_timeout=60, submission_timeout=10), sandbox="auto")
    elapsed = time.monotonic() - t0
    print(f"stopped after {elapsed:.1f} s (limit 10 s)")
    assert elapsed < 60  # the 120 s sleep was cut at the submission limit, not the cell limit
    assert [e.status for e in r.exercises] == ["timeout"] * 3
    assert all("time limit (10 s)" in e.message for e in r.exercises)


def test_unreadable_path_is_missing_not_a_traceback(tmp_path):
    from course_utils.grading.runner import grade_submission

    r = grade_submission(tmp_path / "gone.ipynb", str(SPEC))
    assert r.student == "gone" and {e.status for e in r.exercises} == {"missing"}
