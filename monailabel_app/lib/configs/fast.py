"""The small SAMUS trained from scratch: ~10x faster per new frame, for long propagations and slow machines."""
from .base import ModelConfig
from .bundled import bundled, bundled_publish_name

FAST = ModelConfig(
    name="fast",
    description="small SAMUS (3.8 M parameters, box decoder): ~60-130 ms per new frame on a CPU, for long propagations",
    checkpoint=lambda conf: bundled("fast"),
    publish_name=lambda conf: bundled_publish_name("fast"),
)
