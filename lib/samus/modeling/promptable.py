"""What every model we serve shares: SAM's prompt encoder and mask decoder on a precomputed embedding.

A model receives its image encoder, prompt encoder and mask decoder (as segment-anything's `Sam` does) and
owns what differs between architectures: the input canvas (`geometry`), the intensity preprocessing, the
embedding and low-res logit sizes, and how the image encoder is prepared for fast inference.
"""
import copy
import dataclasses
from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class InferenceEncoder(nn.Module):
    """batch -> embeddings as the predictor runs it (a module, so forward hooks can watch it); for a model
    that `keeps_foundation`, (embeddings, the foundation's own features)."""

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self._run = run

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self._run(batch)


def decode_with(prompt_encoder: nn.Module, mask_decoder: nn.Module, image_embeddings: torch.Tensor, points=None,
                boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
                multimask_output: bool = False, bf16_decoder: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """SAM's prompt encoder + mask decoder on an embedding -> float32 (low-res logits, iou); `bf16_decoder`
    runs the decoder under bf16 autocast (the prompt encoder stays float32, see `PromptableModel.decode`)."""
    sparse, dense = prompt_encoder(points=points, boxes=boxes, masks=mask_input)
    image_pe = prompt_encoder.get_dense_pe()
    with torch.autocast(image_embeddings.device.type, dtype=torch.bfloat16, enabled=bf16_decoder):
        low_res, iou = mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
    return low_res.float(), iou.float()


class PromptableModel(nn.Module):
    arch: str = ""  # registry name (samus.build.ARCHITECTURES), stored in our checkpoints
    # Whether a bf16 predictor also runs the mask decoder in bf16: it pays only where the decoder's output is
    # large (LiteMedSAM's 256 x 256 logits; benchmarks/bench_encoders.py); SAMUS's 128 x 128 one is faster in fp32.
    bf16_decoder_pays: bool = False

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module,
                 geometry, config_name: str = "custom") -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.box_decoder: Optional[nn.Module] = None  # see `decoder_for`
        self.geometry = geometry
        self.config_name = config_name
        self.img_size = geometry.size

    # ---- sizes the rest of the code asks for instead of assuming ----------------------------------------
    @property
    def embedding_size(self) -> int:
        return int(self.prompt_encoder.image_embedding_size[0])

    @property
    def low_res_size(self) -> int:
        return 4 * self.embedding_size  # the mask decoder upscales the embedding grid 4x

    @property
    def keeps_foundation(self) -> bool:
        """Whether answers also need the frozen foundation's own features beside the embedding (`decode`'s
        `foundation`)."""
        return False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def preprocess(self, gray: np.ndarray) -> torch.Tensor:
        """H x W float32 grayscale in [0, 1] -> 1 x 1 x img_size x img_size encoder input."""
        return self.geometry.image(gray)

    backends: Tuple[str, ...] = ("torch",)  # what runs the image encoder at inference (see samus.openvino_trunk)

    def check_backend(self, backend: str) -> str:
        if backend not in self.backends:
            raise ValueError(f"backend {backend!r} is not available for the {self.arch} model (only "
                             f"{', '.join(self.backends)}): OpenVINO runs a frozen foundation trunk, as LiteMedSAM's")
        return backend

    def inference_encoder(self, dtype: torch.dtype = torch.float32, backend: str = "torch") -> InferenceEncoder:
        """A callable batch -> embeddings for inference; bf16 runs a bf16 copy of the encoder (autocast would
        re-cast every weight on every frame)."""
        self.check_backend(backend)
        encoder = self.encoder_in(dtype)
        return InferenceEncoder(lambda batch: encoder(batch.to(dtype)))

    def encoder_in(self, dtype: torch.dtype) -> nn.Module:
        """The image encoder itself for float32, else a copy converted to `dtype`."""
        return self.image_encoder if dtype == torch.float32 else copy.deepcopy(self.image_encoder).to(dtype)

    # ---- prompting ----------------------------------------------------------------------------------------
    def add_box_decoder(self) -> "PromptableModel":
        """Gives the model a box decoder (`config.box_decoder`) starting as a copy of its mask decoder, so
        that training it (mode `box`) teaches boxes while every answer to clicks alone stays bit-identical.
        A model that has one keeps it."""
        if self.box_decoder is None:
            self.box_decoder = copy.deepcopy(self.mask_decoder)
            self.config = dataclasses.replace(self.config, box_decoder=True)
        return self

    def decoder_for(self, has_box: bool) -> nn.Module:
        """The mask decoder that answers a prompt: the box decoder, where the model has one, for every prompt
        that holds a box (alone, with clicks or with a previous mask); the mask decoder otherwise."""
        return self.box_decoder if has_box and self.box_decoder is not None else self.mask_decoder

    def decode(
        self,
        image_embeddings: torch.Tensor,
        point_coords: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = False,
        bf16_decoder: bool = False,
        foundation: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on precomputed embeddings -> (low-res logits, iou). `bf16_decoder`
        runs the mask decoder under bf16 autocast (the prompt encoder stays float32: its Fourier features of
        pixel positions would lose about a pixel in bf16); the outputs are float32. `foundation` is used only
        by models that `keeps_foundation`."""
        points = (point_coords, point_labels) if point_coords is not None else None
        return decode_with(self.prompt_encoder, self.decoder_for(boxes is not None), image_embeddings, points,
                           boxes, mask_input, multimask_output, bf16_decoder)

    def forward(
        self,
        images: Optional[torch.Tensor] = None,
        point_coords: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        image_embeddings: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """images B x C x S x S (the model's preprocessing); points B x N x 2 (x, y) in S-pixel space.

        Returns low-res logits B x 1 x L x L and IoU predictions B x 1.
        """
        if image_embeddings is None:
            if images is None:
                raise ValueError("pass images or image_embeddings")
            image_embeddings = self.image_encoder(images)
        return self.decode(image_embeddings, point_coords, point_labels, boxes, mask_input)

    def upscale(self, low_res_logits: torch.Tensor, size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Bilinear upsampling of low-res logits (to img_size x img_size unless `size` is given)."""
        size = size or (self.img_size, self.img_size)
        if tuple(low_res_logits.shape[-2:]) == tuple(size):
            return low_res_logits.float()
        return F.interpolate(low_res_logits.float(), size=size, mode="bilinear", align_corners=False)
