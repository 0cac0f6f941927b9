"""Headless Debian Chromium for the report's browser tests: one place for the binary, its flags,
the screenshot folder and the skip-or-fail rule (CI installs chromium, so there it must exist)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def sync_playwright() -> Any:
    """Playwright's ``sync_playwright``, after checking that Chromium is there: a failure under CI
    (``.ci/run`` installs it), a skip elsewhere."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed")
    return pytest.importorskip("playwright.sync_api").sync_playwright
