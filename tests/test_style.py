"""The code follows the project's style rules (ruff, configured in pyproject.toml)."""
import os
import subprocess
import sys

from conftest import REPO


def test_ruff_finds_nothing():
    ruff = os.path.join(os.path.dirname(sys.executable), 'ruff')
    proc = subprocess.run([ruff, 'check', '--no-cache', str(REPO)], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
