"""Servers and tools a test needs (Prometheus, npm, a JDK): found, or the test skips saying what is
missing; with TAPGATE_REQUIRE_SERVICES=1 (CI, .ci/run) a missing one fails the test instead."""

from __future__ import annotations

import os
import shutil

import pytest


def require(tool: str, how: str) -> str:
    """The path of an executable the test needs; skips (or fails under TAPGATE_REQUIRE_SERVICES=1)."""
    if path := shutil.which(tool):
        return path
    message = f"{tool} is not installed ({how})"
    if os.environ.get("TAPGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; TAPGATE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)
