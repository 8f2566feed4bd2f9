"""SAMUS image encoder: SAM's ViT run at 256x256 with a parallel CNN branch.

Follows the official SAMUS encoder (spec: shared/spec/samus.md section 1) with module and parameter names
that match the authors' checkpoints, so their state dicts load strictly. SAM's building blocks
(`Block`, `Attention`, `MLPBlock`, `LayerNorm2d`, the window and relative-position helpers) are reused from
`segment_anything`; only the pieces SAMUS adds are defined here.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.image_encoder import (
    Attention,
    Block,
    get_rel_pos,
    window_partition,
    window_unpartition,
)

from ..configs import SamusConfig


class FastAttention(Attention):
    """SAM's attention with decomposed relative positions, computed with fused scaled-dot-product attention.

    Same parameters and results as `segment_anything`'s `Attention`; the relative-position terms become an
    additive mask, so the softmax and the value product run in one fused kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # B x heads x HW x head_dim
        bias = None
        if self.use_rel_pos:
            Rh = get_rel_pos(H, H, self.rel_pos_h)
            Rw = get_rel_pos(W, W, self.rel_pos_w)
            r_q = q.reshape(B * self.num_heads, H, W, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh.to(r_q.dtype))
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw.to(r_q.dtype))
            bias = (rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(B, self.num_heads, H * W, H * W)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        x = x.transpose(1, 2).reshape(B, H, W, -1)
        return self.proj(x)


class Adapter(nn.Module):
    """Bottleneck MLP on the channel dimension (Linear -> GELU -> Linear), optionally with a skip."""

    def __init__(self, dim: int, ratio: float = 0.25, skip_connect: bool = True) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.skip_connect = skip_connect
        self.act = nn.GELU()
        self.D_fc1 = nn.Linear(dim, hidden)
        self.D_fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.D_fc2(self.act(self.D_fc1(x)))
        return x + y if self.skip_connect else y


class FastLayerNorm2d(LayerNorm2d):
    """SAM's channel LayerNorm (same parameters) as one fused `layer_norm` over a channels-last view.

    SAM's version spells the statistics out in eight elementwise passes, which dominates the CNN branch's
    time at full resolution on CPU, and more so in training.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def conv_ln_gelu(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 conv without bias, channel LayerNorm, GELU: the unit of the CNN branch and the refine convs."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), FastLayerNorm2d(out_ch), nn.GELU())


class ConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = conv_ln_gelu(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PoolConvBlock(nn.Module):
    """2x2 max-pool followed by a conv block (halves the resolution)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), *conv_ln_gelu(in_ch, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class CNNBranch(nn.Module):
    """Parallel convolutional branch: full-resolution conv block, then pool-conv blocks down to the token grid."""

    def __init__(self, in_ch: int, channels: Tuple[int, ...], out_ch: int) -> None:
        super().__init__()
        self.inc = ConvBlock(in_ch, channels[0])
        widths = list(channels) + [out_ch]
        self.downs = nn.ModuleList(PoolConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inc(x)
        for down in self.downs:
            x = down(x)
        return x.permute(0, 2, 3, 1)  # channels-last, like the ViT tokens


class PositionAdapter(nn.Module):
    """Squeezes SAM's absolute position embedding to the token grid (pool-conv blocks, one per halving)."""

    def __init__(self, dim: int, stages: int) -> None:
        super().__init__()
        self.downs = nn.ModuleList(PoolConvBlock(dim, dim) for _ in range(stages))

    def forward(self, pos_embed: torch.Tensor) -> torch.Tensor:
        x = pos_embed.permute(0, 3, 1, 2)
        for down in self.downs:
            x = down(x)
        return x.permute(0, 2, 3, 1)


class OverlapPatchEmbed(nn.Module):
    """SAM's 16x16 patch convolution applied with stride 8 on the input resized to img_size + 8."""

    def __init__(self, img_size: int, patch_size: int, stride: int, embed_dim: int) -> None:
        super().__init__()
        self.resize_to = img_size + stride
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        return self.proj(x).permute(0, 2, 3, 1)


class CrossBranchAttention(nn.Module):
    """Multi-head attention with ViT tokens as queries and CNN tokens as keys and values."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, N, _ = t.shape
        return t.reshape(B, N, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, cnn: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        q = self._heads(self.q(x.reshape(B, H * W, C)))
        k = self._heads(self.k(cnn.reshape(B, -1, C)))
        v = self._heads(self.v(cnn.reshape(B, -1, C)))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(B, H, W, C))


class RefineConv(nn.Module):
    """Per-global-block refinement of the CNN tokens (channels-last in and out)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = conv_ln_gelu(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ParaBlock(Block):
    """SAM's transformer block, extended in the global blocks with the SAMUS adapters.

    Windowed blocks behave exactly like SAM's and pass the CNN tokens through. Global blocks add
    cross-branch attention (inside the pre-norm residual branch), refine the CNN tokens, and put an
    adapter (no skip, scaled by 0.5) beside the MLP.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window_size: int, input_size: Tuple[int, int],
                 adapter_ratio: float, is_global: bool) -> None:
        super().__init__(
            dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True,
            norm_layer=_layer_norm, act_layer=nn.GELU, use_rel_pos=True, rel_pos_zero_init=True,
            window_size=0 if is_global else window_size, input_size=input_size if is_global else (window_size, window_size),
        )
        fast = FastAttention(dim, num_heads=num_heads, qkv_bias=True, use_rel_pos=True,
                             input_size=input_size if is_global else (window_size, window_size))
        self.attn = fast
        self.is_global = is_global
        if is_global:
            self.MLP_Adapter = Adapter(dim, adapter_ratio, skip_connect=False)
            self.Space_Adapter = CrossBranchAttention(dim, num_heads)
            self.refine_Adapter = RefineConv(dim)

    def forward(self, x: torch.Tensor, cnn: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        shortcut = x
        h = self.norm1(x)
        if self.is_global:
            h = h + self.Space_Adapter(h, cnn)  # uses the CNN tokens before this block refines them
            cnn = self.refine_Adapter(cnn)
            h = self.attn(h)
        else:
            H, W = h.shape[1], h.shape[2]
            h, pad_hw = window_partition(h, self.window_size)
            h = window_unpartition(self.attn(h), self.window_size, pad_hw, (H, W))
        x = shortcut + h
        g = self.norm2(x)
        if self.is_global:
            x = x + self.mlp(g) + 0.5 * self.MLP_Adapter(g)
        else:
            x = x + self.mlp(g)
        return x, cnn


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)


class SamusImageEncoder(nn.Module):
    """B x {1,3} x 256 x 256 image in [0, 1] -> B x out_chans x 32 x 32 image embedding."""

    def __init__(self, cfg: SamusConfig) -> None:
        super().__init__()
        self.img_size = cfg.img_size
        grid = cfg.grid_size
        # Registration order matches the official model, so state-dict key order does too.
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.pos_embed_grid, cfg.pos_embed_grid, cfg.embed_dim))
        self.cnn_embed = CNNBranch(3, cfg.cnn_channels, cfg.embed_dim)
        self.patch_embed = OverlapPatchEmbed(cfg.img_size, cfg.patch_size, cfg.patch_stride, cfg.embed_dim)
        stages = int(round(math.log2(cfg.pos_embed_grid / grid)))
        if cfg.pos_embed_grid != grid * 2 ** stages:
            raise ValueError(f"pos_embed_grid {cfg.pos_embed_grid} must be the token grid {grid} times a power of 2")
        self.post_pos_embed = PositionAdapter(cfg.embed_dim, stages)
        self.blocks = nn.ModuleList(
            ParaBlock(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.window_size, (grid, grid),
                      cfg.adapter_ratio, is_global=i in cfg.global_attn_indexes)
            for i in range(cfg.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(cfg.embed_dim, cfg.out_chans, kernel_size=1, bias=False),
            FastLayerNorm2d(cfg.out_chans),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, kernel_size=3, padding=1, bias=False),
            FastLayerNorm2d(cfg.out_chans),
        )
        self.input_Adapter = Adapter(cfg.embed_dim, cfg.adapter_ratio, skip_connect=True)

    def position_embedding(self) -> torch.Tensor:
        """SAM's position embedding squeezed to the token grid; independent of the image, so callers
        that run many images through a fixed model may compute it once and pass it to `forward`."""
        return self.post_pos_embed(self.pos_embed)

    def forward(self, x: torch.Tensor, pos_embed: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        cnn = self.cnn_embed(x)
        x = self.input_Adapter(self.patch_embed(x))
        x = x + (self.position_embedding() if pos_embed is None else pos_embed)
        for blk in self.blocks:
            x, cnn = blk(x, cnn)
        x = x + 0.5 * cnn
        return self.neck(x.permute(0, 3, 1, 2))
