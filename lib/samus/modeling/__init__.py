from .image_encoder import SamusImageEncoder
from .mask_decoder import BatchedMaskDecoder
from .samus import Samus

__all__ = ["Samus", "SamusImageEncoder", "BatchedMaskDecoder"]
