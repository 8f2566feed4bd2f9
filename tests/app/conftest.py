"""Fixtures only the app tests use (the shared ones are in tests/conftest.py)."""
import pytest
from monailabel.client import MONAILabelClient


@pytest.fixture
def client(server, tmp_path):
    """MONAI Label's own client for the test module's `server` (a base URL)."""
    return MONAILabelClient(server, tmpdir=str(tmp_path))
