"""SAM's mask decoder with one prompt set per image.

SAM repeats each image embedding once per prompt set of a single image; SAMUS batches several images with
one prompt set each, so the embedding is used as given. Everything else (modules, weights, maths) is
`segment_anything`'s `MaskDecoder`.
"""
from typing import List, Tuple

import torch
from segment_anything.modeling import MaskDecoder


class BatchedMaskDecoder(MaskDecoder):
    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        B = sparse_prompt_embeddings.shape[0]
        if image_embeddings.shape[0] not in (1, B):
            raise ValueError(f"{image_embeddings.shape[0]} image embeddings for {B} prompt sets")
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(B, -1, -1), sparse_prompt_embeddings), dim=1)

        src = image_embeddings.expand(B, -1, -1, -1) + dense_prompt_embeddings
        pos_src = image_pe.expand(B, -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + self.num_mask_tokens), :]

        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper_in: List[torch.Tensor] = [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)]
        b, c, h, w = upscaled.shape
        masks = (torch.stack(hyper_in, dim=1) @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_token_out)
