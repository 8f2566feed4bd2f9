from .image_encoder import SamusImageEncoder
from .lite_medsam import LiteMedSam, LiteMedSamConfig
from .mask_decoder import BatchedMaskDecoder
from .promptable import PromptableModel
from .samus import Samus

__all__ = ["BatchedMaskDecoder", "LiteMedSam", "LiteMedSamConfig", "PromptableModel", "Samus", "SamusImageEncoder"]
