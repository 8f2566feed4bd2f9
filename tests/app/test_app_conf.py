"""`--conf` checking: unknown keys and bad values stop the start with a message saying what is accepted."""
import sys

import pytest

from app_server import APP_DIR, run_server_until_exit

sys.path.insert(0, str(APP_DIR))  # the app's `lib` package, as MONAI Label imports it
from lib.app_conf import ConfError, native_bf16, parse_conf  # noqa: E402
from lib.model_service import ModelService, publish_path  # noqa: E402


def test_defaults_serve_the_bundled_model():
    conf = parse_conf({})
    assert conf.checkpoint is None and conf.cache_size == 64 and conf.threads >= 1
    assert conf.device in ("cpu", "cuda")
    assert conf.precision == ("bf16" if native_bf16(conf.device) else "fp32")  # auto


def test_valid_values_are_parsed(tiny_checkpoint, tmp_path):
    conf = parse_conf({"checkpoint": str(tiny_checkpoint), "config": "tiny", "device": "cpu", "precision": "bf16",
                       "cache_size": "3", "cache_mb": "16", "model_dir": str(tmp_path), "skip_trainers": "true",
                       "sam2": "false", "max_image_voxels": "1000"})
    assert conf.cache_size == 3 and conf.precision == "bf16" and conf.skip_trainers is True
    assert conf.backend == "auto"  # the default: openvino where it applies and is installed
    assert parse_conf({"backend": "openvino", "device": "cpu"}).backend == "openvino"
    assert conf.limits.image_voxels == 1000 and conf.limits.clicks_per_frame == 64  # limits: given and default
    assert conf.checkpoint == str(tiny_checkpoint.resolve())
    # Weights trained from this base are published next to the others, under a name tied to the base.
    assert publish_path(conf, str(tmp_path)).startswith(str(tmp_path / "samus-tiny-"))


@pytest.mark.parametrize("conf, message", [
    ({"cache_sise": "3"}, "unknown --conf key(s) cache_sise"),
    ({"precision": "fp16"}, "accepted: auto or one of fp32, bf16"),
    ({"backend": "onnx"}, "unknown backend; accepted: torch, openvino, or auto"),
    ({"device": "tpu"}, "accepted: auto, cpu, cuda or cuda:N"),
    ({"cache_size": "-1"}, "must be >= 0"),
    ({"cache_size": "many"}, "accepted: an integer >= 0"),
    ({"config": "vit_h"}, "one of vit_b, small, tiny"),
    ({"checkpoint": "/no/such/file.pt"}, "no such file"),
    ({"skip_trainers": "maybe"}, "true or false"),
    ({"threads": "0"}, "must be >= 1"),
    ({"sam2": "true"}, "SAM2"),
    ({"max_clicks": "0"}, "must be >= 1"),
    ({"max_upload_mb": "lots"}, "--conf max_upload_mb 'lots'"),
])
def test_bad_conf_is_refused_with_what_is_accepted(conf, message):
    with pytest.raises(ConfError) as e:
        parse_conf(conf)
    assert message in str(e.value)


def test_broken_checkpoint_is_reported_when_loading(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    service = ModelService(parse_conf({"checkpoint": str(bad), "device": "cpu"}), str(tmp_path))
    with pytest.raises(ValueError, match="cannot be read"):
        service.get()


def test_server_start_stops_on_unknown_key(tmp_path):
    code, output = run_server_until_exit(tmp_path / "studies", {"cache_sise": "3"})
    assert code not in (0, None), output[-2000:]
    assert "unknown --conf key(s) cache_sise" in output
    assert "Accepted keys: checkpoint:" in output


def test_server_start_stops_on_unloadable_checkpoint(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    code, output = run_server_until_exit(tmp_path / "studies", {"checkpoint": str(bad)})
    assert code not in (0, None), output[-2000:]
    assert "cannot load the model" in output and "broken.pt" in output
