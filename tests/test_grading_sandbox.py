"""The sandbox against hostile students: one batch of real attacking submissions, graded end to end.

Each attack class of issue 10 is a notebook in ``fixtures/hostile_subs.py``; one CLI run grades
them with victims beside them. Afterwards: exit status 0, ``grades.csv`` lists everyone, each
attacker got only what its code earned, the victims got full marks, no process started by a
submission is alive, and nothing outside the per-submission directories changed (the checkout's
``course_utils``, the spec, the model cache, the submissions, ``/tmp``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.grading_subs import SPEC
from fixtures.hostile_subs import ENV_CANARY, MARKERS, VICTIM_CANARY, write_hostile

from course_utils.grading import sandbox
from course_utils.grading.cli import main as grade
from course_utils.grading.cli import safe_student_id

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    sandbox.bwrap_problem() is not None, reason=f"no sandbox: {sandbox.bwrap_problem()}"
)


def _tree_hash(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            if "__pycache__" not in p.parts:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _marked_processes() -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(m in cmd for m in MARKERS):
                found.append(f"{d.name}: {cmd[:120]}")
    return found


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    subs, out, cache = root / "subs", root / "out", root / "cache"
    cache.mkdir()
    (cache / "course_cnn-000000000000.pt").write_bytes(b"a real checkpoint")
    victim = subs / "victim.ipynb"
    paths = {
        "victim": str(victim),
        "spec": str(SPEC),
        "checkout": str(ROOT),
        "cache": str(cache),
        "out": str(out),
    }
    expected = write_hostile(subs, paths)
    dup = root / "dup"
    dup.mkdir()
    (dup / "victim.ipynb").write_bytes(victim.read_bytes())  # a second 'victim': reported, graded as victim~2
    import torch

    # what the attackers aim at (the rest of the checkout is edited by people while tests run)
    watched = [
        ROOT / "course_utils" / "grading",
        ROOT / "course_utils" / "exercise.py",
        SPEC,
        cache,
        subs,
        dup,
    ]
    watched += [Path(torch.__file__), Path(sys.prefix) / "pyvenv.cfg"]
    before = _tree_hash(*watched)
    tmp_before = set(os.listdir("/tmp"))
    env = {"COURSE_CACHE_DIR": str(cache), ENV_CANARY: "secret-value"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        args = [str(SPEC), str(subs), str(dup), "--out", str(out), "--jobs", "2", "--timeout", "10"]
        rc = grade([*args, "--memory-mb", "1024", "--quiet"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    alive = _marked_processes()
    ids = {safe_student_id(stem): st for stem, st in expected.items()}
    ids["victim~2"] = ids["victim"]
    return {
        "rc": rc,
        "out": out,
        "root": root,
        "ids": ids,
        "alive": alive,
        "before": before,
        "after": _tree_hash(*watched),
        "tmp_new": set(os.listdir("/tmp")) - tmp_before,
    }


def _res(batch, sid: str) -> dict:
    return json.loads((batch["out"] / sid / "results.json").read_text(encoding="utf-8"))


def _out(batch, sid: str, ex: str = "0.1") -> str:
    return next(t["output"] for t in _res(batch, sid)["tests"] if t["number"] == ex)


def test_batch_completes_and_lists_everyone(batch):
    assert batch["rc"] == 0
    grades = batch["out"] / "grades.csv"
    assert grades.is_file()
    rows = list(csv.DictReader(grades.open(encoding="utf-8")))
    shown = sorted(r["student"].removeprefix("'") for r in rows)
    assert shown == sorted(batch["ids"])
    assert {p.name for p in batch["out"].iterdir()} == {*batch["ids"], "grades.csv"}
    assert sorted(p.name for p in batch["root"].iterdir()) == ["cache", "dup", "out", "subs"]
    # a formula is shown as text; every row's score matches its results.json
    assert any(r["student"] == "'@SUM_1+1_" for r in rows)
    for r in rows:
        assert float(r["score"]) == _res(batch, r["student"].removeprefix("'"))["score"]


@pytest.mark.parametrize(
    "sid",
    ["victim", "victim~2", "snoop", "patcher", "escape", "killer", "harness", "results", "repr_bomb"]
    + ["surrogate", "resources", "student-grades.csv", "student", "_cmd___-C_calc__A0", "huge"]
    + ["_udcff_udcfebytes", "@SUM_1+1_"],
)
def test_each_student_gets_what_their_code_earned(batch, sid):
    res = _res(batch, sid)
    got, want = res["extra_data"]["statuses"], batch["ids"][sid]
    detail = [t["output"][:300] for t in res["tests"]]
    assert set(got) == set(want) and all(got[e] in want[e].split("|") for e in want), detail
    earned = {"0.1": 1, "0.2": 2, "0.3": 2}
    assert res["score"] == sum(earned[e] for e, s in want.items() if s == "passed")


def test_no_process_started_by_a_submission_survives(batch):
    assert batch["alive"] == []


def test_nothing_outside_the_sandbox_changed(batch):
    changed = sorted(
        k
        for k in batch["before"].keys() | batch["after"].keys()
        if batch["before"].get(k) != batch["after"].get(k)
    )
    assert changed == []
    assert "H1-PWNED" not in batch["tmp_new"]
    assert "WROTE[]" in _out(batch, "patcher"), _out(batch, "patcher")


def test_no_secret_reaches_the_attacker(batch):
    text = _out(batch, "snoop")
    assert "LEAKS[]" in text, text
    for sid in batch["ids"]:
        blob = (batch["out"] / sid / "feedback.html").read_text(encoding="utf-8") + json.dumps(
            _res(batch, sid)
        )
        for secret in ("secret-value", "_count_edges", "31337", "HIDDEN_MARKER"):
            assert secret not in blob, (sid, secret)
        if sid not in ("victim", "victim~2"):
            assert VICTIM_CANARY not in blob, sid


def test_hostile_results_become_that_students_error_rows(batch):
    text = " ".join(t["output"] for t in _res(batch, "results")["tests"])
    assert "too large" in text and "not a regular file" in text
    assert "judging your result took longer" in _out(batch, "repr_bomb")
    assert "\\ud800" in _out(batch, "surrogate")  # escaped, and every report was written
    assert "20 MB" in _out(batch, "huge")
    assert "[crashed]" in _out(batch, "resources") or "[timeout]" in _out(batch, "resources")
    assert "Resource temporarily unavailable" in _out(batch, "resources", "0.2")  # pids.max
    assert "File too large" in _out(batch, "resources", "0.3")


def test_harness_tampering_is_flagged_and_scores_nothing(batch):
    res = _res(batch, "harness")
    assert res["score"] == 0
    assert any("imports the grader" in f for f in res["extra_data"]["flags"])
    assert any("imports the exercise specs" in f for f in _res(batch, "snoop")["extra_data"]["flags"])
    assert _res(batch, "victim")["extra_data"]["flags"] == []


def test_results_json_has_only_gradescope_fields(batch):
    for sid in batch["ids"]:
        res = _res(batch, sid)
        assert set(res) == {"score", "max_score", "execution_time", "output", "tests", "extra_data"}
        for t in res["tests"]:
            assert set(t) == {"name", "number", "score", "max_score", "status", "output", "visibility"}
            assert t["status"] in ("passed", "failed") and t["visibility"] == "visible"
            assert 0 <= t["score"] <= t["max_score"]


def test_kernel_side_package_holds_no_answers():
    from course_utils.exercise import all_exercises
    from course_utils.grading.kernelpkg import kernel_package, pickled_run, run_closure_names

    pkg = kernel_package() / "course_utils"
    assert [p.name for p in (pkg / "specs").iterdir()] == ["__init__.py"]
    assert sorted(p.name for p in (pkg / "grading").iterdir()) == ["__init__.py", "launcher.py"]
    runs = {}
    for ex in all_exercises():  # every registered chapter, whoever wrote its specs
        data = pickled_run(ex)
        names = run_closure_names(data)
        assert ex.reference.__name__ == "<lambda>" or ex.reference.__name__ not in names, ex.id
        runs[ex.id] = data
    blob = Path(kernel_package()) / "runs.pkl"
    code = (
        "import pickle, sys, cloudpickle\n"
        "import course_utils.checks as c; c.check('1.1', None)\n"
        "runs = pickle.load(open(sys.argv[1], 'rb'))\n"
        "bad = [k for k, v in runs.items() if not callable(cloudpickle.loads(v))]\n"
        "print('ok' if not bad else bad)\n"
    )
    import pickle
    import tempfile

    with tempfile.TemporaryDirectory() as t:
        blob = Path(t) / "runs.pkl"
        blob.write_bytes(pickle.dumps(runs))
        env = sandbox.bwrap_argv(
            Path(t), {"PYTHONPATH": str(kernel_package()), "PATH": "/usr/bin"}, ro=[kernel_package()]
        )
        out = subprocess.run(
            [*env, sys.executable, "-c", code, str(blob)], capture_output=True, text=True, timeout=300
        )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "checks are disabled during grading" in out.stdout.replace("is disabled", "checks are disabled")
    assert out.stdout.strip().endswith("ok"), out.stdout
