"""SSformer: a lightweight Swin Transformer + all-MLP decoder for semantic segmentation."""

from ssformer.checkpoints import CheckpointError, LoadReport, load_weights
from ssformer.data.preprocessing import Preprocessing
from ssformer.inference.segmenter import Segmenter
from ssformer.loading import LoadedModel, load_model
from ssformer.models import SSformer, SSformerConfig, create_model, list_models

__version__ = "0.1.0"

__all__ = ["CheckpointError", "LoadReport", "LoadedModel", "Preprocessing", "SSformer", "SSformerConfig", "Segmenter",
           "__version__", "create_model", "list_models", "load_model", "load_weights"]
