"""SAMUS: Segment Anything adapted to ultrasound (Lin et al., arXiv 2309.06824), for interactive use."""
from .build import ARCHITECTURES, build_lite_medsam, build_model, build_samus, freeze_for_training, parameter_report
from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .configs import CONFIGS, SamusConfig, get_config
from .default import BUNDLED_MODELS, DEFAULT_CHECKPOINT, DEFAULT_MODEL, FAST_CHECKPOINT, load_default_model
from .modeling import LiteMedSam, PromptableModel, Samus
from .predictor import EmbeddingCache, ImageEmbedding, SamusPredictor
from .preprocess import preprocess_image, to_unit_grayscale

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES", "BUNDLED_MODELS", "DEFAULT_MODEL", "FAST_CHECKPOINT", "LiteMedSam", "PromptableModel",
    "build_lite_medsam", "build_model",
    "CONFIGS", "CheckpointError", "DEFAULT_CHECKPOINT", "EmbeddingCache", "ImageEmbedding", "Samus",
    "SamusConfig", "SamusPredictor", "build_samus", "freeze_for_training", "get_config", "load_default_model",
    "parameter_report", "preprocess_image", "read_checkpoint", "save_checkpoint", "to_unit_grayscale",
]
