"""Hugging Face Hub: a repo id resolves to a local model folder through the Hub's cache, and a
folder uploads as a model repo. Uses ``huggingface_hub`` (the ``hub`` extra) for all of it, so
``HF_HUB_OFFLINE``, ``HF_HOME``/``HF_HUB_CACHE``, tokens and revisions behave as everywhere else."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MODEL_FILES = ["config.json", "model.safetensors", "preprocessor_config.json", "training_config.json", "README.md"]


def looks_like_repo_id(source: str | os.PathLike) -> bool:
    """``org/name`` that is not a local path."""
    text = str(source)
    return bool(REPO_ID.match(text)) and not Path(text).exists() and not text.endswith(
        (".pt", ".pth", ".safetensors", ".bin", ".ckpt"))


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError("loading from or pushing to the Hugging Face Hub needs huggingface_hub: "
                          "pip install 'ssformer[hub]'") from None
    return huggingface_hub


def download(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot folder of ``repo_id`` (downloaded, or from the cache when offline)."""
    hub = _hub()
    try:
        return Path(hub.snapshot_download(repo_id, revision=revision, allow_patterns=MODEL_FILES))
    except (hub.errors.LocalEntryNotFoundError, hub.errors.RepositoryNotFoundError,
            hub.errors.RevisionNotFoundError) as e:
        raise FileNotFoundError(f"{repo_id!r} is neither a local path nor a Hub model this machine can get "
                                f"({type(e).__name__}: {str(e).splitlines()[0]})") from e


def upload(folder: str | os.PathLike, repo_id: str, private: bool | None = None, token: str | None = None,
           commit_message: str = "Upload SSformer model", revision: str | None = None) -> str:
    """Create ``repo_id`` if needed and upload ``folder``; returns the commit URL."""
    hub = _hub()
    api = hub.HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                             commit_message=commit_message, revision=revision)
    return str(getattr(info, "commit_url", info))
