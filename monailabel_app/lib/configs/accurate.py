"""SAMUS on the LiteMedSAM foundation: the best masks; the first click on a new frame runs a TinyViT encoder
(~0.5 s with bf16 on a 2-core CPU)."""
from .base import ModelConfig
from .bundled import bundled, bundled_publish_name

ACCURATE = ModelConfig(
    name="accurate",
    description="SAMUS on LiteMedSAM (frozen TinyViT + SAMUS heads): best masks, ~0.5-1 s per new frame on a CPU",
    checkpoint=lambda conf: bundled("accurate"),
    publish_name=lambda conf: bundled_publish_name("accurate"),
)
