from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The repository's own test data (tests/fixtures/README.md says where each file came from).
FIXTURES = REPO / "tests" / "fixtures"
TEST_OUTPUT = REPO / "test-output"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"test fixtures not found at {FIXTURES}: the checkout is incomplete")
    return FIXTURES


@pytest.fixture
def user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated LoRA Studio data folder (index, job records) for one test."""
    d = tmp_path / "lora-studio-data"
    monkeypatch.setenv("LORA_STUDIO_DATA", str(d))
    return d


@pytest.fixture(scope="session")
def test_output() -> Path:
    """Where tests leave artefacts a person may want to look at (screenshots, reports)."""
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT
