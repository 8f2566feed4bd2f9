"""The bundled default model: a small SAMUS trained with simulated clicks on breast, fetal-head and nerve/vessel
ultrasound (see weights/MODEL_CARD.md)."""
from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "samus_small_multi.pt"


def load_default_model(device="cpu"):
    """The bundled model, ready for `SamusPredictor`. Needs no download."""
    from .build import build_samus

    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(f"the bundled model {DEFAULT_CHECKPOINT} is missing; reinstall samus or pass a checkpoint")
    return build_samus(config=None, checkpoint=DEFAULT_CHECKPOINT, device=device)
