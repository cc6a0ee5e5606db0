"""Model definitions: the Swin encoder, the all-MLP decoder and SSformer itself."""

from ssformer.models.decoder import AllMLPDecoder
from ssformer.models.ssformer import VARIANTS, SSformer, SSformerConfig, create_model, list_models
from ssformer.models.swin import SwinEncoder

__all__ = ["AllMLPDecoder", "SSformer", "SSformerConfig", "SwinEncoder", "VARIANTS", "create_model",
           "list_models"]
