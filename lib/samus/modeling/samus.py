"""The SAMUS model: SAMUS image encoder + SAM's prompt encoder and mask decoder at 256x256."""

import torch
from segment_anything.modeling import PromptEncoder, TwoWayTransformer

from ..configs import SamusConfig
from ..geometry import StretchToSquare
from .image_encoder import SamusImageEncoder
from .mask_decoder import BatchedMaskDecoder
from .promptable import InferenceEncoder, PromptableModel


def samus_parts(cfg: SamusConfig):
    """(image encoder, prompt encoder, mask decoder) of a SAMUS configuration."""
    grid = cfg.grid_size
    prompt_encoder = PromptEncoder(
        embed_dim=cfg.out_chans,
        image_embedding_size=(grid, grid),
        input_image_size=(cfg.img_size, cfg.img_size),
        mask_in_chans=16,
    )
    mask_decoder = BatchedMaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=cfg.decoder_depth, embedding_dim=cfg.out_chans, mlp_dim=cfg.decoder_mlp_dim,
            num_heads=cfg.decoder_heads,
        ),
        transformer_dim=cfg.out_chans,
        iou_head_depth=3,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
    )
    return SamusImageEncoder(cfg), prompt_encoder, mask_decoder


class Samus(PromptableModel):
    """Point-prompted segmentation at 256x256.

    `image_encoder`, `prompt_encoder` and `mask_decoder` have SAM's call signatures. `forward` runs the
    whole model the way the authors do: one prompt set per image, single-mask output, 128x128 logits.
    Images are stretched to the square input and fed as [0, 1] grayscale without normalisation.
    """

    arch = "samus"

    def __init__(self, cfg: SamusConfig, config_name: str = "custom", parts=None) -> None:
        image_encoder, prompt_encoder, mask_decoder = parts or samus_parts(cfg)
        super().__init__(image_encoder, prompt_encoder, mask_decoder, StretchToSquare(cfg.img_size), config_name)
        self.config = cfg
        if cfg.box_decoder:
            self.add_box_decoder()
        # Present in SAM and in the official SAMUS for API compatibility; never used on this path
        # (SAMUS feeds [0, 1] grayscale without normalisation).
        self.register_buffer("pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def inference_encoder(self, dtype: torch.dtype = torch.float32, backend: str = "torch"):
        self.check_backend(backend)
        encoder = self.encoder_in(dtype)
        # The position adapter does not depend on the image: run it once, not per frame.
        with torch.inference_mode():
            pos_embed = encoder.position_embedding()
        return InferenceEncoder(lambda batch: encoder(batch.to(dtype), pos_embed))
