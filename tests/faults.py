"""Faults in the ``dali-cutmix`` processes a test starts: a crash in training, a rank that dies, a disk that stops
taking data mid-write. A fault is Python source that patches the product; :func:`fault_env` writes it where
:data:`FAULT_COMMAND` (``tests/fault_cli.py``) runs it before the command, in every process of the run."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

#: The environment variable naming the fault's file.
FAULT_ENV = "DALI_CUTMIX_TEST_FAULT"
#: ``dali-cutmix`` with the fault of :data:`FAULT_ENV` installed (what :func:`cli_runs.cli_command` is without one).
FAULT_SCRIPT = Path(__file__).resolve().with_name("fault_cli.py")
FAULT_COMMAND = [sys.executable, str(FAULT_SCRIPT)]


def fault_env(env: dict, tmp_path: Path, source: str) -> dict:
    """``env`` with the fault ``source`` (dedented) written to ``tmp_path / "fault.py"`` and named by
    :data:`FAULT_ENV`; run :data:`FAULT_COMMAND` in it."""
    path = tmp_path / "fault.py"
    path.write_text(textwrap.dedent(source))
    return {**env, FAULT_ENV: str(path)}
