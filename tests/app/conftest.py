"""Fixtures only the app tests use (the shared ones are in tests/conftest.py)."""
import sys

import pytest
from monailabel.client import MONAILabelClient


@pytest.fixture
def client(server, tmp_path):
    """MONAI Label's own client for the test module's `server` (a base URL)."""
    return MONAILabelClient(server, tmpdir=str(tmp_path))


@pytest.fixture
def limits():
    """The request limits of a server started with default --conf values (and a small params limit)."""
    from app_server import APP_DIR

    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))
    from lib.app_conf import parse_conf

    return parse_conf({"device": "cpu", "max_params_kb": "4", "max_upload_mb": "1"}).limits
