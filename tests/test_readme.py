"""The README fits on a screen or two, its two commands are what CI runs, and what it points to exists."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def readme_commands() -> list[str]:
    spec = importlib.util.spec_from_file_location("readme_commands", ROOT / ".ci" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.readme_commands(README)


def test_the_readme_is_short_and_its_two_commands_are_what_ci_runs() -> None:
    assert len(README.read_text().splitlines()) <= 250
    install, tests = readme_commands()
    assert re.fullmatch(r'pip install torch==[\d.]+ && pip install -e "\.\[test\]" && rlcore train dqn CartPole-v1',
                        install), install
    assert tests == "python -m pytest -q"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv" in ci and "readme_commands.py" in ci and 'bash -euo pipefail -c "$command"' in ci
    assert "pip install" not in ci.split("readme_commands.py")[0]  # nothing is installed before the README's line


def test_everything_the_readme_links_or_names_exists() -> None:
    text = README.read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    named = re.findall(r"`(?:python )?((?:benchmarks|examples|docs)/[\w./-]+)", text)
    assert links and named
    for path in links + named:
        assert (ROOT / path).exists(), path
