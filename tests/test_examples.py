"""Every example runs in its short mode and asserts it learned something (the scripts hold the asserts)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_runs_in_short_mode(script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "RLCORE_EXAMPLE_QUICK": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "runs").is_dir(), "the example wrote no run folder"


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2
