"""SSformer: a lightweight Swin Transformer + all-MLP decoder for semantic segmentation."""

from ssformer.models import SSformer, SSformerConfig, create_model, list_models
from ssformer.models.weights import CheckpointError, LoadReport, load_weights
from ssformer.inference.segmenter import Segmenter

__version__ = "0.1.0"

__all__ = ["CheckpointError", "LoadReport", "SSformer", "SSformerConfig", "Segmenter", "__version__", "create_model",
           "list_models", "load_weights"]
