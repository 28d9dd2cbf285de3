"""Which stores a command-line test runs on: both (the ``cli`` fixture's default), or
SQLite alone for a test about SQLite files themselves (each use says why)."""

from __future__ import annotations

import pytest

SQLITE_ONLY = pytest.mark.parametrize("cli", ["sqlite"], indirect=True)
