"""The SAMUS model: SAMUS image encoder + SAM's prompt encoder and mask decoder at 256x256."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from segment_anything.modeling import PromptEncoder, TwoWayTransformer

from ..configs import SamusConfig
from .image_encoder import SamusImageEncoder
from .mask_decoder import BatchedMaskDecoder


class Samus(nn.Module):
    """Point-prompted segmentation at 256x256.

    `image_encoder`, `prompt_encoder` and `mask_decoder` have SAM's call signatures. `forward` runs the
    whole model the way the authors do: one prompt set per image, single-mask output, 128x128 logits.
    """

    def __init__(self, cfg: SamusConfig, config_name: str = "custom") -> None:
        super().__init__()
        self.config = cfg
        self.config_name = config_name
        self.img_size = cfg.img_size
        grid = cfg.grid_size
        self.image_encoder = SamusImageEncoder(cfg)
        self.prompt_encoder = PromptEncoder(
            embed_dim=cfg.out_chans,
            image_embedding_size=(grid, grid),
            input_image_size=(cfg.img_size, cfg.img_size),
            mask_in_chans=16,
        )
        self.mask_decoder = BatchedMaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=cfg.decoder_depth, embedding_dim=cfg.out_chans, mlp_dim=cfg.decoder_mlp_dim,
                num_heads=cfg.decoder_heads,
            ),
            transformer_dim=cfg.out_chans,
            iou_head_depth=3,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        )
        # Present in SAM and in the official SAMUS for API compatibility; never used on this path
        # (SAMUS feeds [0, 1] grayscale without normalisation).
        self.register_buffer("pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def decode(
        self,
        image_embeddings: torch.Tensor,
        point_coords: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on precomputed embeddings -> (low-res logits, iou)."""
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        return self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )

    def forward(
        self,
        images: Optional[torch.Tensor] = None,
        point_coords: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        image_embeddings: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """images B x {1,3} x 256 x 256 in [0, 1]; points B x N x 2 (x, y) in 256-pixel space.

        Returns low-res logits B x 1 x 128 x 128 and IoU predictions B x 1.
        """
        if image_embeddings is None:
            if images is None:
                raise ValueError("pass images or image_embeddings")
            image_embeddings = self.image_encoder(images)
        return self.decode(image_embeddings, point_coords, point_labels, boxes, mask_input)

    def upscale(self, low_res_logits: torch.Tensor, size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Bilinear upsampling of low-res logits (to img_size x img_size unless `size` is given)."""
        size = size or (self.img_size, self.img_size)
        return F.interpolate(low_res_logits.float(), size=size, mode="bilinear", align_corners=False)
