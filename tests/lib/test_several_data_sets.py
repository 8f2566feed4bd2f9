"""Several data sets: FOLDER[:WEIGHT] specs, the balanced sampler and `samus train` on two folders."""
import json

import numpy as np
import pytest

from samus.data import BalancedSampler, parse_data_spec
from toy_data import two_class_folder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_several_folders_with_weights_and_balanced_sampling(tmp_path, capsys):
    from samus.cli import main

    a = two_class_folder(tmp_path / "alpha", 4, "a")
    b = two_class_folder(tmp_path / "beta", 4, "b", seed=1)
    assert parse_data_spec(f"{a}:3") == (str(a), 3.0) and parse_data_spec(str(a)) == (str(a), 1.0)
    with pytest.raises(ValueError, match="positive"):
        parse_data_spec(f"{a}:-1")
    groups = [0] * 90 + [1] * 10
    sampler = BalancedSampler(groups, [1.0, 1.0], 1000, seed=0)
    drawn = np.array(groups)[list(sampler)]
    assert 0.44 < drawn.mean() < 0.56  # the small data set is drawn as often as the big one
    big = [i for i in sampler if groups[i] == 0]
    assert len(set(big[:90])) == 90  # within a data set, no repeats before every sample was seen
    two = [list(BalancedSampler(groups, [1.0, 3.0], 100, seed=0, rank=r, world=2)) for r in (0, 1)]
    assert len(two[0]) == len(two[1]) == 50 and np.array(groups)[two[0] + two[1]].mean() > 0.6

    out = tmp_path / "run"
    rc = main(["train", "--data", str(a), f"{b}:2", "--config", "tiny", "--mode", "full", "--epochs", "1",
               "--batch-size", "2", "--max-rounds", "1", "--out", str(out), "--no-tensorboard", "--no-progress"])
    assert rc == 0
    history = json.loads((out / "history.json").read_text())
    assert set(history[0]["val_curves"]) == {"alpha", "beta"}
    from samus.checkpoint import read_checkpoint

    prov = read_checkpoint(out / "last.pt").provenance
    assert prov["data_weights"] == {"alpha": 1.0, "beta": 2.0} and prov["train_samples"] == 2 * 3 * 3
    rc = main(["train", "--data", str(a), str(a), "--config", "tiny", "--out", str(out)])
    assert rc == 2 and "named 'alpha'" in capsys.readouterr().err
