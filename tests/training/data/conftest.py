"""The real nuScenes tables of ../shared/data/real, completed so nuscenes-devkit loads them: the
fixtures (`devkit_root`, `nusc`) are in tests/conftest.py, shared with the command line's tests."""

from __future__ import annotations

from tests.conftest import REAL_VERSION

__all__ = ["REAL_VERSION"]
