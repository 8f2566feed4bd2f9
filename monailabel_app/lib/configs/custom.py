"""The weights given with `--conf checkpoint` (any format `samus` reads; `--conf config` names the SAMUS
configuration of files that carry none)."""
import hashlib
import os

from .base import ModelConfig


def _checkpoint(conf) -> str:
    from ..app_conf import ConfError

    if not conf.checkpoint:
        raise ConfError("--conf models custom needs --conf checkpoint PATH")
    return conf.checkpoint


def _publish_name(conf) -> str:
    # Tied to the base file and configuration: weights trained from one base are never served on another.
    stem = os.path.basename(conf.checkpoint).split(".")[0][:40] or "checkpoint"
    digest = hashlib.sha1(f"{conf.checkpoint}|{conf.config}".encode()).hexdigest()[:8]
    return f"samus-{stem}-{digest}.pt"


CUSTOM = ModelConfig(
    name="custom",
    description="the checkpoint given with --conf checkpoint",
    checkpoint=_checkpoint,
    publish_name=_publish_name,
)
