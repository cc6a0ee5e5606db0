"""SSformer: a lightweight Swin Transformer + all-MLP decoder for semantic segmentation.

Ways in: :meth:`SSformer.from_pretrained` (any supported file, model folder or Hub repo id) and
:func:`create_model` (a fresh model of a named variant); :func:`load_weights` copies a checkpoint's
tensors into a model you already have (such as ImageNet Swin weights into a fresh model).
"""

from ssformer.checkpoints import CheckpointError, LoadReport, load_weights
from ssformer.data.preprocessing import Preprocessing
from ssformer.inference.segmenter import Labels, PipelineOverrides, Segmenter
from ssformer.models import SSformer, SSformerConfig, create_model, list_models

__version__ = "0.1.0"

__all__ = ["CheckpointError", "Labels", "LoadReport", "PipelineOverrides", "Preprocessing", "SSformer",
           "SSformerConfig", "Segmenter", "__version__", "create_model", "list_models", "load_weights"]
