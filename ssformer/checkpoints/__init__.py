"""Checkpoint formats: reading files, mapping every format's keys onto this project's, the model folder."""

from ssformer.checkpoints.io import CheckpointError, torch_load, unwrap
from ssformer.checkpoints.keymaps import detect_format, infer_config, to_ssformer_state_dict
from ssformer.checkpoints.weights import LoadReport, load_weights

__all__ = ["CheckpointError", "LoadReport", "detect_format", "infer_config", "load_weights",
           "to_ssformer_state_dict", "torch_load", "unwrap"]
