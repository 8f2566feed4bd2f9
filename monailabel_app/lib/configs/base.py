"""What a served model is: its name, its weights and what it is good for."""
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ModelConfig:
    name: str  # the value of a request's `model` parameter
    description: str  # shown in /info
    checkpoint: Callable[[object], str]  # AppConf -> base weights (raises ConfError when they are missing)
    publish_name: Callable[[object], str]  # AppConf -> file name trained weights are published under
