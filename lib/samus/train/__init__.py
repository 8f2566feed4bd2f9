"""Training SAMUS: the one implementation behind `samus train` and the MONAI Label trainer.

The authors' recipe (Adam, 0.8 soft Dice + 0.2 BCE on the 128 x 128 logits) with click simulation
(`samus.click_simulation`): each sample starts from a varied first prompt (one click, several positive and
negative clicks, or a box), then 0..`max_rounds` corrective rounds add a click in the largest error region
and feed the previous logits back; the loss covers the last round. `prompts="fixed", max_rounds=0` is the
authors' original single-click recipe. Several data sets train together with balanced sampling; every class
and separate structure of a label is its own target. Validation scores Dice after 1..`val_clicks` clicks
(deterministic corrective clicks) per data set every epoch; the best checkpoint has the highest mean.
Runs on CPU or GPU, optionally under bf16 autocast, and data-parallel when started by torchrun
(gloo on CPU, nccl on CUDA; only rank 0 writes files).

Modules: `config` (TrainConfig), `distributed`, `model_setup`, `loaders`, `steps` (one step and its loss),
`epoch`, `validation`, `checkpointing`, `loop` (`train`), `pairs` (`train_on_pairs`).
"""
from .config import ProgressFn, TrainConfig, trainer_option_defaults
from .loop import train
from .pairs import label_recipe, split_items, train_on_pairs
from .validation import validate

__all__ = ["ProgressFn", "TrainConfig", "label_recipe", "split_items", "train", "train_on_pairs", "trainer_option_defaults",
           "validate"]
