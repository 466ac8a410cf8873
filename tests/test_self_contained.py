"""The repository carries its own test data: nothing in it points outside the clone.

A user's clone has only what is committed. Every tracked file (code, comments, docs, data) is scanned for
references to a folder beside the checkout or to an environment variable that used to name one; and every
file in tests/fixtures must have its provenance in tests/fixtures/README.md.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"

# Built from pieces so that this file does not contain what it forbids.
_SIBLING = "shared"
FORBIDDEN = (
    ".." + "/" + _SIBLING,  # a folder beside the checkout
    ".." + "\\" + _SIBLING,
    _SIBLING + "/" + "fixtures",
    "LORA_STUDIO_" + "FIXTURES",  # the variable that pointed the tests elsewhere
)
_SKIP_DIRS = {".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "test-output", "node_modules"}


def _tracked_files() -> list[Path]:
    """The files git tracks (what a clone gets); without git, every file that is not a cache or venv."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60).stdout
        names = [n for n in out.decode("utf-8", "surrogateescape").split("\0") if n]
        if names:
            return [REPO / n for n in names]
    except (OSError, subprocess.SubprocessError):
        pass
    return [p for p in REPO.rglob("*") if p.is_file()
            and not any(part in _SKIP_DIRS or part.startswith(".venv") for part in p.relative_to(REPO).parts)]


def test_no_file_points_outside_the_repository() -> None:
    files = _tracked_files()
    assert any(f.name == "conftest.py" for f in files)
    needles = [s.encode() for s in FORBIDDEN]
    offenders = []
    for path in files:
        if not path.is_file() or path.is_symlink():  # a submodule folder, or a file deleted but not yet committed
            continue
        data = path.read_bytes()
        for needle, text in zip(needles, FORBIDDEN, strict=True):
            if needle in data:
                line = data[: data.index(needle)].count(b"\n") + 1
                offenders.append(f"{path.relative_to(REPO)}:{line}: {text}")
    assert not offenders, "references to data outside the clone:\n" + "\n".join(offenders)


def test_tests_read_fixtures_from_the_repository(fixtures_dir: Path) -> None:
    assert fixtures_dir.resolve() == FIXTURES.resolve()
    assert (fixtures_dir / "kohya-outputs" / "sd15-kohya-dim4-mychar.safetensors").is_file()


@pytest.mark.parametrize("path", sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*")
                                        if p.is_file() and p.name != "README.md"))
def test_every_fixture_has_its_provenance_in_the_readme(path: str) -> None:
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) + "/" for i in range(2, len(parts))]  # e.g. model-configs/sdxl/
    assert path in readme or parts[-1] in readme or any(p in readme for p in prefixes), (
        f"tests/fixtures/{path} is not described in tests/fixtures/README.md"
    )
