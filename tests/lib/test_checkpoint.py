"""Checkpoint formats: ours (self-describing), official SAMUS, SAM ViT-B; safe loading and clear errors."""
import hashlib
import http.server
import socket
import threading

import pytest
import torch

import samus
from samus import checkpoint as ckpt


def test_own_format_describes_its_model(tmp_path, tiny_checkpoint):
    c = samus.read_checkpoint(tiny_checkpoint)
    assert c.kind == "samus" and c.config_name == "tiny" and c.provenance["source"].startswith("tests")
    model = samus.build_samus(config=None, checkpoint=tiny_checkpoint)
    assert model.config_name == "tiny"
    for k, v in model.state_dict().items():
        assert torch.equal(v, c.state_dict[k]), k


def test_half_precision_storage_loads_back_as_float32(tmp_path):
    model = samus.build_samus("tiny")
    path = samus.save_checkpoint(tmp_path / "half.pt", model, half=True)
    loaded = samus.build_samus(None, checkpoint=path)
    p = next(loaded.parameters())
    assert p.dtype == torch.float32
    ref = dict(model.named_parameters())
    for name, q in loaded.named_parameters():
        assert torch.allclose(q, ref[name], atol=1e-3, rtol=1e-3), name


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    model = samus.build_samus("tiny")
    target = tmp_path / "m.pt"
    samus.save_checkpoint(target, model)
    first = target.read_bytes()
    samus.save_checkpoint(target, model, extra={"epoch": 3})
    assert target.read_bytes() != first
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_numpy_metadata_is_stored_as_plain_numbers(tmp_path):
    # validation means are numpy scalars; stored as such the safe loader would refuse the file
    import numpy as np

    model = samus.build_samus("tiny")
    path = samus.save_checkpoint(tmp_path / "m.pt", model, provenance={"val_dice": np.float32(0.75)},
                                 extra={"curve": [np.float64(0.5), np.array([1, 2])], "pair": (np.int64(3), 4)})
    c = samus.read_checkpoint(path)
    assert c.provenance["val_dice"] == pytest.approx(0.75) and type(c.provenance["val_dice"]) is float
    assert c.extra["curve"] == [0.5, [1, 2]] and c.extra["pair"] == [3, 4]


def test_official_samus_state_dict_with_module_prefix(tmp_path):
    model = samus.build_samus("tiny")
    path = tmp_path / "SAMUS_11261200_12_0.81.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    c = samus.read_checkpoint(path)
    assert c.kind == "samus_official"
    loaded = samus.build_samus("tiny", checkpoint=path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_config_mismatch_names_the_file_and_the_first_mismatches(tmp_path, tiny_checkpoint):
    with pytest.raises(ValueError, match="holds a 'tiny' model"):
        samus.build_samus("small", checkpoint=tiny_checkpoint)
    path = tmp_path / "official.pth"
    torch.save(samus.build_samus("tiny").state_dict(), path)
    with pytest.raises(samus.CheckpointError, match=r"official.pth does not fit.*shape mismatches.*file \(") as e:
        samus.build_samus("small", checkpoint=path)
    assert "image_encoder" in str(e.value)


def test_missing_keys_are_reported(tmp_path):
    sd = samus.build_samus("tiny").state_dict()
    sd.pop("image_encoder.neck.0.weight")
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(samus.CheckpointError, match=r"1 missing keys.*neck.0.weight"):
        samus.build_samus("tiny", checkpoint=path)


def test_truncated_and_foreign_files(tmp_path, tiny_checkpoint):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(samus.CheckpointError, match="cut.pt cannot be read"):
        samus.read_checkpoint(cut)
    with pytest.raises(samus.CheckpointError, match="no such file"):
        samus.read_checkpoint(tmp_path / "nope.pt")
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(samus.CheckpointError, match="neither a SAMUS nor a SAM"):
        samus.read_checkpoint(other)


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_arbitrary_objects_are_never_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(samus.CheckpointError, match="cannot be read safely"):
        samus.read_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


def test_sam_checkpoint_initialises_new_modules_and_resizes_global_tables(tmp_path):
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"](checkpoint=None)
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(sam.state_dict(), path)
    assert samus.read_checkpoint(path).kind == "sam"
    model = samus.build_samus("vit_b", checkpoint=path)
    sd = model.state_dict()
    assert sd["image_encoder.blocks.2.attn.rel_pos_h"].shape == (63, 64)
    assert torch.equal(sd["image_encoder.blocks.0.attn.qkv.weight"], sam.state_dict()["image_encoder.blocks.0.attn.qkv.weight"])
    assert torch.equal(sd["mask_decoder.iou_token.weight"], sam.state_dict()["mask_decoder.iou_token.weight"])


def _serve(tmp_path, payload: bytes):
    (tmp_path / "sam.pth").write_bytes(payload)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/sam.pth"


def test_download_checks_the_checksum(tmp_path):
    payload = b"not really SAM" * 1000
    server, url = _serve(tmp_path, payload)
    try:
        dest = tmp_path / "out" / "sam_vit_b_01ec64.pth"
        good = hashlib.md5(payload).hexdigest()
        assert ckpt.download_sam_vit_b(dest, url=url, md5=good) == str(dest)
        assert dest.read_bytes() == payload
        with pytest.raises(RuntimeError, match="checksum mismatch"):
            ckpt.download_sam_vit_b(tmp_path / "bad.pth", url=url)
        assert not (tmp_path / "bad.pth").exists() and not (tmp_path / "bad.pth.part").exists()
    finally:
        server.shutdown()


def test_download_offline_gives_a_clear_message(tmp_path):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RuntimeError, match="offline"):
        ckpt.download_sam_vit_b(tmp_path / "x.pth", url=f"http://127.0.0.1:{port}/sam.pth", timeout=2)


def test_command_line_lists_its_commands(capsys):
    from samus.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for cmd in ("train", "evaluate", "predict", "bench", "download"):
        assert cmd in out


def test_saved_files_are_readable_by_others(tmp_path):
    import os
    import stat

    path = samus.save_checkpoint(tmp_path / "m.pt", samus.build_samus("tiny"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
