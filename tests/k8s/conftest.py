"""Fixtures for the emulator's own tests (see k8s_emulator/fixtures.py)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from k8s_emulator.fixtures import *  # noqa: E402,F403
