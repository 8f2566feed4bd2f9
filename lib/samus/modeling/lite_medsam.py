"""SAMUS on the LiteMedSAM foundation: a frozen TinyViT trunk, SAMUS's additions on its embedding, and
LiteMedSAM's prompt encoder and mask decoder fine-tuned for clicks and boxes.

The trunk is frozen, so its 256 x 64 x 64 output can be computed once per image and cached on disk; what
trains (the adapter, the CNN branch, the prompt encoder, the mask decoder) runs on cached features. The
SAMUS additions are optional (`LiteMedSamConfig`), so the ablation compares LiteMedSAM as is, the decoder
fine-tuned, and the decoder fine-tuned with the additions, all with one class.
"""
import copy
from dataclasses import asdict, dataclass
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn as nn
from segment_anything.modeling import PromptEncoder, TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d

from ..geometry import LongestSideAndPad
from .mask_decoder import BatchedMaskDecoder
from .promptable import InferenceEncoder, PromptableModel, decode_with
from .tiny_vit_encoder import (EMBEDDING_CHANNELS, EMBEDDING_SIZE, LITE_MEDSAM_PACKAGE, LITE_MEDSAM_SHA256,
                               build_tiny_vit)


@dataclass(frozen=True)
class LiteMedSamConfig:
    img_size: int = 256
    adapter: bool = False  # SAMUS feature adapter on the embedding (bottleneck MLP, residual)
    adapter_ratio: float = 0.25
    cnn_branch: bool = False  # SAMUS's parallel CNN branch on the image, fused into the embedding
    cnn_channels: tuple = (32, 64, 128)
    # A box alone is answered by the union (pixel-wise max of logits) of our heads and LiteMedSAM's own
    # frozen heads on the same trunk features: a box then gives at least what LiteMedSAM gives from it, also
    # on organs the fine-tune never saw (model card, "Boxes").
    box_union: bool = False
    box_decoder: bool = False  # a second mask decoder for every prompt holding a box (`PromptableModel.decoder_for`)

    def to_dict(self) -> Dict:
        return asdict(self)


LITE_MEDSAM_CONFIGS: Dict[str, LiteMedSamConfig] = {
    "lite_medsam": LiteMedSamConfig(),  # LiteMedSAM's layout; fine-tuned heads or the original weights
    "lite_medsam_samus": LiteMedSamConfig(adapter=True, cnn_branch=True, box_union=True),
}


def _prompt_encoder(cfg: LiteMedSamConfig) -> PromptEncoder:
    return PromptEncoder(embed_dim=EMBEDDING_CHANNELS, image_embedding_size=(EMBEDDING_SIZE, EMBEDDING_SIZE),
                         input_image_size=(cfg.img_size, cfg.img_size), mask_in_chans=16)


def _mask_decoder() -> BatchedMaskDecoder:
    return BatchedMaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=EMBEDDING_CHANNELS, mlp_dim=2048, num_heads=8),
        transformer_dim=EMBEDDING_CHANNELS,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )


class FoundationBoxHeads(nn.Module):
    """LiteMedSAM's own prompt encoder and mask decoder, frozen (weights from the package's file, never
    trained or stored in our checkpoints): its answer to a box on the raw trunk features."""

    def __init__(self, cfg: LiteMedSamConfig) -> None:
        super().__init__()
        self.prompt_encoder = _prompt_encoder(cfg)
        self.mask_decoder = _mask_decoder()
        self.requires_grad_(False)

    def forward(self, trunk_features: torch.Tensor, boxes: torch.Tensor, bf16_decoder: bool = False) -> torch.Tensor:
        return decode_with(self.prompt_encoder, self.mask_decoder, trunk_features, boxes=boxes,
                           bf16_decoder=bf16_decoder)[0]


class FeatureAdapter(nn.Module):
    """SAMUS's adapter (down-project, GELU, up-project, residual) over every embedding position. The up
    projection starts at zero, so an untrained adapter leaves the foundation model's embedding unchanged."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = max(8, int(dim * ratio))
        self.down, self.up = nn.Conv2d(dim, hidden, 1), nn.Conv2d(hidden, dim, 1)
        self.act = nn.GELU()
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class CnnBranch(nn.Module):
    """SAMUS's parallel CNN branch: local texture and edges at full resolution, down to the embedding grid
    (stride 4 here: 256 -> 64), fused by a zero-initialised projection of [embedding, CNN features]."""

    def __init__(self, channels: tuple, dim: int) -> None:
        super().__init__()
        layers, c_in = [], 1
        for i, c in enumerate(channels):
            stride = 2 if i < 2 else 1
            layers += [nn.Conv2d(c_in, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c), nn.GELU(),
                       nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.GELU()]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.fuse = nn.Sequential(nn.Conv2d(dim + c_in, dim, 1), LayerNorm2d(dim), nn.Conv2d(dim, dim, 1))
        nn.init.zeros_(self.fuse[2].weight)
        nn.init.zeros_(self.fuse[2].bias)

    def forward(self, embedding: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
        feats = self.body(gray)
        return embedding + self.fuse(torch.cat([embedding, feats.to(embedding.dtype)], 1))


class LiteMedSamEncoder(nn.Module):
    """The frozen TinyViT `trunk` plus the optional SAMUS additions. `trunk` output is what the feature
    cache holds; `adapt(trunk_output, images)` is the trainable rest."""

    def __init__(self, cfg: LiteMedSamConfig) -> None:
        super().__init__()
        self.trunk = build_tiny_vit()
        self.adapter = FeatureAdapter(EMBEDDING_CHANNELS, cfg.adapter_ratio) if cfg.adapter else None
        self.cnn = CnnBranch(tuple(cfg.cnn_channels), EMBEDDING_CHANNELS) if cfg.cnn_branch else None

    def train(self, mode: bool = True):
        super().train(mode)
        self.trunk.eval()  # frozen: its BatchNorm statistics stay LiteMedSAM's
        return self

    @property
    def needs_image(self) -> bool:
        return self.cnn is not None

    def trunk_features(self, images: torch.Tensor) -> torch.Tensor:
        """B x 1 x S x S normalised grayscale -> B x 256 x 64 x 64 (the cacheable part)."""
        return self.trunk(images.expand(-1, 3, -1, -1))

    def adapt(self, features: torch.Tensor, images: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = features
        if self.adapter is not None:
            x = self.adapter(x)
        if self.cnn is not None:
            if images is None:
                raise ValueError("the CNN branch needs the images beside the cached features")
            x = self.cnn(x, images.to(x.dtype))
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.adapt(self.trunk_features(images), images)


class LiteMedSam(PromptableModel):
    """LiteMedSAM's layout at 256 x 256 (longest side scaled, zero padding), min-max intensity, 256 x 256
    low-res logits."""

    arch = "lite_medsam"
    bf16_decoder_pays = True
    backends = ("torch", "openvino")  # the frozen trunk converts once (samus.openvino_trunk)
    # Our checkpoints leave the frozen trunk (and LiteMedSAM's own box heads) out and name their file instead
    # (see samus.checkpoint).
    frozen_prefix = ("image_encoder.trunk.", "box_heads.")
    frozen_base = {"file": "lite_medsam.pth", "package": LITE_MEDSAM_PACKAGE, "sha256": LITE_MEDSAM_SHA256}

    def __init__(self, cfg: LiteMedSamConfig = LiteMedSamConfig(), config_name: str = "lite_medsam") -> None:
        super().__init__(LiteMedSamEncoder(cfg), _prompt_encoder(cfg), _mask_decoder(),
                         LongestSideAndPad(cfg.img_size), config_name)
        self.config = cfg
        self.box_heads = FoundationBoxHeads(cfg) if cfg.box_union else None
        if cfg.box_decoder:
            self.add_box_decoder()

    @property
    def keeps_foundation(self) -> bool:
        return self.box_heads is not None

    def decode(self, image_embeddings, point_coords=None, point_labels=None, boxes=None, mask_input=None,
               multimask_output=False, bf16_decoder=False, foundation=None):
        """As `PromptableModel.decode`; with `box_union` and the raw trunk features as `foundation`, a box
        alone (no clicks, no previous mask) is answered by the union with LiteMedSAM's own answer. The IoU
        prediction stays ours."""
        low_res, iou = super().decode(image_embeddings, point_coords, point_labels, boxes, mask_input,
                                      multimask_output, bf16_decoder)
        if (self.box_heads is not None and foundation is not None and boxes is not None and point_coords is None
                and mask_input is None and not multimask_output):
            theirs = self.box_heads(foundation.to(image_embeddings.dtype), boxes, bf16_decoder)
            low_res = torch.maximum(low_res, theirs)
        return low_res, iou

    def preprocess(self, gray: np.ndarray) -> torch.Tensor:
        """MedSAM's normalisation: the resized image min-max scaled to [0, 1] before zero padding."""
        h, w = self.geometry.content_shape(gray.shape)
        canvas = self.geometry.image(gray)
        content = canvas[..., :h, :w]
        lo, hi = content.min(), content.max()
        canvas[..., :h, :w] = (content - lo) / torch.clamp(hi - lo, min=1e-8)
        return canvas

    def trunk_encoder(self, dtype: torch.dtype = torch.float32):
        """A callable batch -> frozen trunk features (float32) for inference and the feature cache: a
        channels-last copy of the trunk in `dtype` (bf16 uses AVX-512 BF16 / AMX where the CPU has them)."""
        trunk = copy.deepcopy(self.image_encoder.trunk).to(dtype).to(memory_format=torch.channels_last)

        def run(batch: torch.Tensor) -> torch.Tensor:
            x = batch.to(dtype).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)
            return trunk(x).float()
        return run

    def inference_encoder(self, dtype: torch.dtype = torch.float32, backend: str = "torch"):
        if self.check_backend(backend) == "openvino":
            from ..openvino_trunk import openvino_trunk

            trunk = openvino_trunk(self, "bf16" if dtype == torch.bfloat16 else "fp32")
        else:
            trunk = self.trunk_encoder(dtype)

        def run(batch: torch.Tensor):
            features = trunk(batch)
            embedding = self.image_encoder.adapt(features, batch.float())
            return (embedding, features) if self.keeps_foundation else embedding
        return InferenceEncoder(run)


def lite_medsam_to_ours(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """LiteMedSAM's own key layout -> ours (its TinyViT becomes `image_encoder.trunk`)."""
    return {("image_encoder.trunk." + k[len("image_encoder."):]) if k.startswith("image_encoder.") else k: v
            for k, v in sd.items()}
