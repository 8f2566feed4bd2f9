"""Fixtures only the Slicer module tests use (the shared ones are in tests/conftest.py)."""
import pytest


@pytest.fixture
def running_task():
    """MONAI Label's /train/ record of a running task: its status and the last lines the trainer printed."""
    return {"id": "train_1", "status": "RUNNING", "details": ["loading", "Epoch: 3/10, loss 0.41", ""]}


@pytest.fixture
def train_record():
    """The SAMUS trainer's record (train_stats.json, /info/'s train_stats) at the end of epoch 3 of 10."""
    return {"name": "train_01", "run_id": "20250101_120000", "status": "RUNNING", "epoch": 3, "total_epochs": 10,
            "step": 12, "steps": 12, "train_loss": 0.41}
