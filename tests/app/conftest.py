"""Fixtures only the app tests use (the shared ones are in tests/conftest.py)."""
import sys
from pathlib import Path

import pytest
from monailabel.client import MONAILabelClient


def pytest_plugin_registered(plugin):
    """Hand the module name `conftest` back to tests/conftest.py once this file is loaded: pytest imports
    every folder's conftest.py as `conftest`, and tests elsewhere import the shared helpers by that name."""
    if getattr(plugin, "__file__", None) == str(Path(__file__).resolve().parents[1] / "conftest.py"):
        sys.modules["conftest"] = plugin


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
