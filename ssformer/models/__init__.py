"""Model definitions: the Swin encoder, the all-MLP decoder and SSformer itself."""

from ssformer.models.config import VARIANTS, Architecture, SSformerConfig
from ssformer.models.decoder import AllMLPDecoder
from ssformer.models.ssformer import SSformer, create_model, list_models
from ssformer.models.swin import SwinEncoder

__all__ = ["AllMLPDecoder", "Architecture", "SSformer", "SSformerConfig", "SwinEncoder", "VARIANTS", "create_model",
           "list_models"]
