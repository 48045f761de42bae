"""The parts of the application side over a one-still project (tests/support/app_parts.py), closed after each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.app_parts import AppParts
from tests.support.helpers import still_project


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[AppParts]:
    built = AppParts(still_project(tmp_path))
    yield built
    built.close()
