"""Named SAMUS configurations.

`vit_b` is the paper's model (SAM ViT-B at 256x256 input). The smaller ones keep the same architecture
(overlapped patch embedding, position adapter, feature adapters, CNN branch, cross-branch attention,
SAM prompt encoder and mask decoder) with narrower and shallower layers, for the bundled default model
and for fast tests.
"""
from dataclasses import asdict, dataclass
from typing import Dict, Tuple


@dataclass(frozen=True)
class SamusConfig:
    img_size: int = 256  # encoder input; the patch embedding resizes it to img_size + patch_stride
    patch_size: int = 16
    patch_stride: int = 8  # half the kernel: 50% overlap, 32x32 tokens at 256
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    window_size: int = 14
    global_attn_indexes: Tuple[int, ...] = (2, 5, 8, 11)
    pos_embed_grid: int = 64  # SAM's 1024/16 grid; the position adapter pools it to the token grid
    adapter_ratio: float = 0.25
    cnn_channels: Tuple[int, ...] = (64, 128, 256)  # CNN branch widths before the last block (-> embed_dim)
    out_chans: int = 256  # image-embedding channels = prompt / decoder width
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_head_hidden_dim: int = 256
    # A second mask decoder that answers every prompt holding a box (`Samus.box_decoder`): boxes learned by a
    # model trained for clicks without changing any answer to clicks alone. Not part of the paper's model.
    box_decoder: bool = False

    @property
    def grid_size(self) -> int:
        # The patch embedding sees img_size + stride pixels: (264 - 16) / 8 + 1 = 32 tokens at 256.
        return (self.img_size + self.patch_stride - self.patch_size) // self.patch_stride + 1

    @property
    def low_res_size(self) -> int:
        return 4 * self.grid_size  # the mask decoder upscales 4x: 128 at 256 input

    def to_dict(self) -> Dict:
        return asdict(self)


CONFIGS: Dict[str, SamusConfig] = {
    "vit_b": SamusConfig(),
    # Bundled default model: trained from scratch on BUSI on a 2-core CPU; about 2.6 M parameters.
    "small": SamusConfig(
        embed_dim=128,
        depth=4,
        num_heads=4,
        window_size=8,
        global_attn_indexes=(1, 3),
        cnn_channels=(16, 32, 64),
        out_chans=128,
        decoder_mlp_dim=512,
        decoder_heads=8,
        iou_head_hidden_dim=128,
    ),
    # Unit tests only: builds and runs in milliseconds.
    "tiny": SamusConfig(
        embed_dim=64,
        depth=2,
        num_heads=2,
        window_size=8,
        global_attn_indexes=(1,),
        cnn_channels=(8, 16, 32),
        out_chans=64,
        decoder_mlp_dim=128,
        decoder_heads=4,
        iou_head_hidden_dim=64,
    ),
}


def get_config(name: str) -> SamusConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown SAMUS configuration {name!r}; choose one of {sorted(CONFIGS)}")
    return CONFIGS[name]
