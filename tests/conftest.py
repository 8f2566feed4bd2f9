"""Shared test fixtures: repository paths, the sample BUSI images, small checkpoints built on the fly."""
import os
import tempfile

import pytest
import torch

from repo_paths import ROOT, SAMPLES, load_png  # noqa: F401  (shared with every test folder)

torch.set_num_threads(min(2, os.cpu_count() or 1))
# One OpenVINO conversion of the accurate model's trunk per test session, shared by the servers the tests
# start (they inherit the environment), and never written to the user's own cache.
os.environ.setdefault("SAMUS_OPENVINO_CACHE", tempfile.mkdtemp(prefix="samus-openvino-"))


@pytest.fixture
def one_thread():
    """Tiny-model ops are too small to gain from a second thread; on a busy 2-core machine it costs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sample_pairs():
    """(image path, mask path) for the bundled BUSI sample images."""
    images = sorted((SAMPLES / "images").glob("*.png"))
    assert images, f"no sample images in {SAMPLES}"
    return [(p, SAMPLES / "masks" / p.name) for p in images]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised 'tiny' model in the project's checkpoint format."""
    import samus

    torch.manual_seed(0)
    model = samus.build_samus("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    samus.save_checkpoint(path, model, provenance={"source": "tests: random init"})
    return path
