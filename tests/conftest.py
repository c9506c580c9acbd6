import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _threads():
    import torch

    torch.set_num_threads(2)


@pytest.fixture
def repo():
    return REPO


@pytest.fixture
def cfg():
    """The ci config, validated (small enough for unit tests)."""
    from dabench import config

    return config.load(REPO / "configs" / "ci.yaml")
