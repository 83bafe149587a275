"""Shared fixtures for the foundation unit tests (kept small on purpose)."""

from __future__ import annotations

import pytest
import torch

from course_utils.data import Splits, load_digits_dataset


@pytest.fixture(scope="session")
def digits() -> Splits:
    """The default digits splits (1×16×16, seed 0), loaded once per test session."""
    return load_digits_dataset()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private, empty ``COURSE_CACHE_DIR`` for tests of the pretrained-model cache only."""
    path = tmp_path / "cache"
    monkeypatch.setenv("COURSE_CACHE_DIR", str(path))
    return path


@pytest.fixture
def one_thread():
    """Run the test with one intra-op thread (faster and steadier on a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
