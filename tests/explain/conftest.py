"""Fixtures of the explain tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _explain_on_one_thread(one_thread):
    """Every explain test module runs on one torch thread (``one_thread`` of tests/conftest.py)."""
