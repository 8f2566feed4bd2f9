"""SAMUS: Segment Anything adapted to ultrasound (Lin et al., arXiv 2309.06824), for interactive use."""
from .build import build_samus, freeze_for_training, parameter_report
from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .configs import CONFIGS, SamusConfig, get_config
from .modeling import Samus

__version__ = "0.1.0"

__all__ = [
    "CONFIGS", "CheckpointError", "Samus", "SamusConfig", "build_samus", "freeze_for_training", "get_config",
    "parameter_report", "read_checkpoint", "save_checkpoint",
]
