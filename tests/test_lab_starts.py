"""`make lab` starts a JupyterLab server: start one from the venv, wait for /api/status, stop it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyter_lab_answers_on_localhost(tmp_path):
    jupyter = Path(sys.executable).parent / "jupyter"
    assert jupyter.exists(), f"{jupyter} missing: run `make setup`"
    port = _free_port()
    cmd = [
        str(jupyter), "lab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1", "--notebook-dir", str(ROOT / "notebooks"), "--ServerApp.token=",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers/CI often run as root; jupyter refuses without it
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/api/status"
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"jupyter lab exited with {proc.returncode}:\n{(tmp_path / 'lab.log').read_text()}"
            )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    status = (resp.status, json.loads(resp.read()))
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        assert status is not None, f"no answer on {url} within 60 s:\n{(tmp_path / 'lab.log').read_text()}"
        code, body = status
        assert code == 200
        assert {"started", "last_activity", "kernels", "connections"} <= body.keys()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=10) as resp:
            assert resp.status == 200 and b"JupyterLab" in resp.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs", timeout=10) as resp:
            assert "compression-course" in json.loads(resp.read())["kernelspecs"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    assert proc.returncode is not None
