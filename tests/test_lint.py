"""Every shell script passes shellcheck, the Dockerfile hadolint, the Python code ruff's rule set in ruff.toml and
mypy's checks in mypy.ini (all pinned in requirements-dev.txt)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHELL_SCRIPTS = sorted({ROOT / "deploy.sh", *(ROOT / "scripts").glob("*.sh"), *(ROOT / "tests" / "fakes").glob("*.sh")})


def tool(name: str) -> str:
    """The venv's copy first (where requirements-dev.txt installs it), then PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -r requirements-dev.txt")
    return found


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(script: Path) -> None:
    result = subprocess.run([tool("shellcheck"), "--external-sources", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_passes_on_the_whole_tree() -> None:
    result = subprocess.run([tool("ruff"), "check", "--output-format", "concise", str(ROOT)], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_passes_on_the_product_and_the_local_stack() -> None:
    result = subprocess.run([tool("mypy")], capture_output=True, text=True, cwd=ROOT)  # files: mypy.ini
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_dockerfile() -> None:
    result = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_scripts_are_executable_and_strict() -> None:
    for script in (ROOT / "deploy.sh", ROOT / "scripts" / "build-action.sh"):
        assert script.stat().st_mode & 0o111, f"{script} is not executable"
        assert "set -euo pipefail" in script.read_text(), f"{script} does not set -euo pipefail"
