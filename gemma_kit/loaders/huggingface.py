"""The Hugging Face format: a transformers folder of Gemma or RecurrentGemma, and ``hf://org/name`` handles.

A transformers checkpoint is a folder (``hf_files.py`` reads it):
- ``config.json``: the hyper-parameters. ``model_type`` is ``gemma``, ``gemma2``, ``gemma3_text`` or
  ``gemma4_text``, or ``gemma3`` / ``gemma4`` (multimodal models: we load the language model their
  ``text_config`` describes), or ``recurrent_gemma`` (RecurrentGemma, a Griffin);
- ``model.safetensors``, or shards ``model-00001-of-00002.safetensors``, ... that
  ``model.safetensors.index.json`` lists (tensor name -> shard file);
- ``tokenizer.model`` (SentencePiece) and/or ``tokenizer.json`` (see ``hf_tokenizer.py``).

One format reads both families: config.json -> GemmaConfig or GriffinConfig is ``hf_config.py``,
and the config's family picks the weight map, ``hf_gemma.py`` or ``hf_griffin.py``. Every file is
checked (every tensor there, every shard present) before the model's memory is allocated.
"""

from __future__ import annotations

import os

from ..models.gemma.config import GemmaConfig
from ..models.gemma4.config import Gemma4Config
from ..models.griffin.config import GriffinConfig
from . import hf_gemma, hf_griffin
from .hf_config import config_from_hf, read_hf_config
from .hf_files import CONFIG_FILE, INDEX_FILE, HuggingFaceFormatError
from .hf_gemma import hf_tensor_names
from .hf_tokenizer import load_hf_tokenizer
from .registry import Format, folder_of

__all__ = ["config_from_hf", "read_hf_config", "load_huggingface", "hf_tensor_names", "HuggingFaceFormatError",
           "DOWNLOAD", "resolve_hf_handle", "HubDownloadError", "is_hf_checkpoint", "HUGGINGFACE_FORMAT"]


# Each family's transformers weight map: (folder, config) -> plan, checking every tensor is there;
# then (backbone, folder, plan) -> the weights assigned.
WEIGHT_MAPS = {GemmaConfig: (hf_gemma.plan_tensors, hf_gemma.load_hf_weights),
               Gemma4Config: (hf_gemma.plan_tensors, hf_gemma.load_hf_weights),
               GriffinConfig: (hf_griffin.official_tensors, hf_griffin.load_hf_griffin_weights)}


def load_huggingface(path, dtype=None, **options):
    """(config, backbone, tokenizer) from a Hugging Face folder (or its config.json / a weight file).

    ``options``: RecurrentGemma's overrides (e.g. ``attention_window_size``); a Gemma folder takes none.
    """
    from ..models import backbone_class, for_family

    folder = folder_of(path)
    config = read_hf_config(folder, **options)
    plan_tensors, fill = for_family(WEIGHT_MAPS, config, "transformers weight map")
    plan = plan_tensors(folder, config)
    tokenizer = load_hf_tokenizer(folder)            # every problem with the files, before allocating
    backbone = backbone_class(config)(config, dtype=dtype, random_init=False)
    fill(backbone, folder, plan)
    return config, backbone, tokenizer


def is_hf_checkpoint(path) -> bool:
    """A folder with config.json or .safetensors weights, or one of those files."""
    path = os.fspath(path)
    if os.path.isfile(path):
        name = os.path.basename(path)
        return name in (CONFIG_FILE, INDEX_FILE) or name.endswith(".safetensors")
    if not os.path.isdir(path):
        return False
    names = os.listdir(path)
    return CONFIG_FILE in names or INDEX_FILE in names or any(n.endswith(".safetensors") for n in names)


HUGGINGFACE_FORMAT = Format("huggingface", is_hf_checkpoint, load_huggingface, read_hf_config)


# -- hf://org/name[@revision] -----------------------------------------------------------------------
ALLOW_PATTERNS = [CONFIG_FILE, "generation_config.json", "*.safetensors", INDEX_FILE, "tokenizer.model",
                  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def _snapshot_download(**kwargs) -> str:
    from huggingface_hub import snapshot_download
    return snapshot_download(**kwargs)


DOWNLOAD = _snapshot_download     # (repo_id=, revision=, allow_patterns=) -> local folder; tests replace it


class HubDownloadError(FileNotFoundError):
    """An ``hf://`` handle that could not be turned into a local folder (network, gated or unknown repo)."""


def resolve_hf_handle(rest: str) -> str:
    """The local folder for ``hf://org/name`` or ``hf://org/name@revision`` (``rest`` is after ``hf://``)."""
    repo_id, at, revision = rest.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")) or (at and not revision):
        raise ValueError(f"'hf://{rest}': expected hf://org/name or hf://org/name@revision")
    try:
        return os.fspath(DOWNLOAD(repo_id=repo_id, revision=revision or None, allow_patterns=ALLOW_PATTERNS))
    except ImportError:
        raise
    except Exception as error:   # network, gated repository, unknown name, ...
        raise HubDownloadError(f"Could not download 'hf://{rest}' from the Hugging Face Hub: "
                               f"{str(error).strip().rstrip('.')}. Gemma repositories are gated: accept the "
                               "licence on the model page and log in (`hf auth login`), or download the folder "
                               "yourself and pass its path.") from error
