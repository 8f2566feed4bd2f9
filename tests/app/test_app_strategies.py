"""Active-learning strategies that MONAI Label provides, as this app serves them."""
import sys
import time

import pytest

from app_server import APP_DIR

sys.path.insert(0, str(APP_DIR))


def test_random_strategy_answers_when_every_image_was_just_picked(tmp_path):
    # MONAI Label's Random weighs images by the seconds since it last picked them; all 0 (or a clock step
    # back) made random.choices raise and the server answer 500 (found by the fuzz test).
    from lib.activelearning.random_strategy import RandomStrategy
    from monailabel.datastore.local import LocalDatastore
    from monailabel.tasks.activelearning.random import Random
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "only.png")
    datastore = LocalDatastore(str(tmp_path), extensions=["*.png"], auto_reload=False)
    datastore.update_image_info("only", {"strategy": {"random": {"ts": int(time.time()) + 5}}})
    with pytest.raises(ValueError):
        Random()({"strategy": "random"}, datastore)
    assert RandomStrategy()({"strategy": "random"}, datastore)["id"] == "only"
