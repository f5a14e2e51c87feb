"""The `letterhead` command as an operator runs it: a process of its own, for the state directory
in LETTERHEAD_HOME, its output and exit status as the shell sees them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def letterhead(home: Path, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *arguments],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "LETTERHEAD_HOME": str(home)},
    )  # fmt: skip
