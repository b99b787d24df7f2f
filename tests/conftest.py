"""Shared fixtures. Real data comes from $PIPELINE_DATA_DIR (CI: ../shared/data)."""
import os
from pathlib import Path

import pytest

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    folder = Path(os.environ.get("PIPELINE_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (folder / "sst2" / "test.tsv").is_file():
        pytest.fail(f"real data not found in {folder}: set PIPELINE_DATA_DIR to the folder "
                    "holding sst2/ (../shared/data in CI)")
    return folder
