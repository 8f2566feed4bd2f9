"""The models this app can serve, one module each (as MONAI Label's sample apps keep one config per model);
`--conf models accurate,fast` chooses which are served, the first being the default for clicks.

Every served model shares the infer tasks (a request picks one with its `model` parameter), the embedding
cache rules, refinement, limits and security checks; each can be fine-tuned by its own train task.
"""
from typing import Dict

from .accurate import ACCURATE
from .base import ModelConfig
from .custom import CUSTOM
from .fast import FAST

MODEL_CONFIGS: Dict[str, ModelConfig] = {c.name: c for c in (ACCURATE, FAST, CUSTOM)}

__all__ = ["MODEL_CONFIGS", "ModelConfig"]
