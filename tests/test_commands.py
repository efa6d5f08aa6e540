"""The command-line tools: every console script is also a `python -m nmt` command."""

import subprocess
import sys
import tomllib
from pathlib import Path

from nmt.__main__ import COMMANDS


def test_module_offers_every_console_script():
    """`python -m nmt X` runs what `nmt-X` runs (under `accelerate launch -m nmt` only the module form works)."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    assert {f"nmt-{name}": target for name, target in COMMANDS.items()} == scripts
    for name in COMMANDS:
        result = subprocess.run([sys.executable, "-m", "nmt", name, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "usage:" in result.stdout, (name, result.stderr[-500:])


def test_module_without_a_known_command_prints_usage():
    result = subprocess.run([sys.executable, "-m", "nmt", "trian"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage: python -m nmt {train,prepare," in result.stderr
