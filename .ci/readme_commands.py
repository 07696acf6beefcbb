"""The README's two commands (install + train, and the tests), as written in its first ```bash block.

    python .ci/readme_commands.py          # prints them, one per line (comments and blank lines left out)

.ci/run runs exactly these lines in a fresh virtualenv; benchmarks/first_run.py takes its `rlcore train ...`
part from the first one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands(readme: Path = README) -> list[str]:
    """The command lines of README.md's first ```bash block."""
    block = re.search(r"```bash\n(.*?)```", readme.read_text(), re.S)
    if block is None:
        raise SystemExit(f"{readme} has no ```bash block")
    lines = [line.strip() for line in block.group(1).splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    if len(commands) != 2:
        raise SystemExit(f"the first bash block of {readme} should hold two commands, found {commands}")
    return commands


if __name__ == "__main__":
    sys.stdout.write("\n".join(readme_commands()) + "\n")
