"""A Gemma 4 assistant in a Hugging Face folder (``model_type`` ``gemma4_assistant``) -> ``Gemma4Assistant``.

The drafters ``google/gemma-4-*-it-assistant`` (``models/gemma4/assistant.py``) are saved by
transformers' ``Gemma4AssistantForCausalLM``:

- ``config.json``: ``backbone_hidden_size`` (the target's width), ``use_ordered_embeddings``,
  ``num_centroids``, ``centroid_intermediate_top_k``, and a ``text_config`` that is a
  ``gemma4_text`` decoder (read by ``hf_gemma4.py``) whose layers all borrow keys and values;
- tensors: the decoder under ``model.`` (no key or value projections: every layer borrows),
  ``pre_projection.weight``, ``post_projection.weight``, and with ordered embeddings
  ``masked_embedding.centroids.weight`` and ``masked_embedding.token_ordering`` (int64).
  ``lm_head`` is tied to ``model.embed_tokens`` and not stored.

An assistant cannot write text alone, so it is not a ``GemmaModel``: ``gemma_kit.load`` refuses
it (``hf_gemma4.py`` says why) and ``load_assistant`` reads it; ``drafting.Assistant`` uses it.
"""

from __future__ import annotations

import os

import numpy as np
from keras import ops

from ..models.gemma4.assistant import Gemma4Assistant, Gemma4AssistantConfig
from ..models.gemma4.config import Gemma4Config
from .hf_files import CONFIG_FILE, HuggingFaceFormatError, model_name, read_config_json, tensor_files
from .hf_gemma import load_hf_weights, shard_of
from .hf_gemma4 import gemma4_config_from_hf, hf_tensor_names
from .registry import folder_of

MODEL_TYPE = "gemma4_assistant"
# transformers 5's Gemma4AssistantConfig defaults, for fields a config.json leaves out.
DEFAULTS = dict(backbone_hidden_size=1536, use_ordered_embeddings=False, num_centroids=2048,
                centroid_intermediate_top_k=32)
PROJECTIONS = {"pre_projection.kernel": "pre_projection.weight", "post_projection.kernel": "post_projection.weight"}
ORDERED = {"ordered_embedding/centroids.kernel": "masked_embedding.centroids.weight",
           "ordered_embedding.token_ordering": "masked_embedding.token_ordering"}


def assistant_config_from_hf(config_dict: dict, path: str = CONFIG_FILE, name: str | None = None):
    """A ``Gemma4AssistantConfig`` from a ``gemma4_assistant`` config.json's contents (read from ``path``)."""
    if config_dict.get("model_type") != MODEL_TYPE:
        raise HuggingFaceFormatError(f"{path}: model_type {config_dict.get('model_type')!r} is not a Gemma 4 "
                                     f"assistant ({MODEL_TYPE!r})")
    text = config_dict.get("text_config")
    if not isinstance(text, dict):
        raise HuggingFaceFormatError(f"{path}: no text_config (the assistant's Gemma 4 decoder)")
    if config_dict.get("tie_word_embeddings") is False:
        raise HuggingFaceFormatError(f"{path}: tie_word_embeddings=false (an assistant ties lm_head to its "
                                     "embedding) is not supported")
    # Read as a plain Gemma 4 decoder, KV sharing aside: Gemma4Config wants a layer that lends keys.
    decoder = gemma4_config_from_hf({**text, "model_type": "gemma4_text", "num_kv_shared_layers": 0},
                                    f"{path} (text_config)", name)
    values = {**DEFAULTS, **config_dict}
    fields = {field: getattr(decoder, field) for field in Gemma4Config.__dataclass_fields__}
    # transformers turns a missing or 0 num_kv_shared_layers into "all of them"
    fields["num_kv_shared_layers"] = text.get("num_kv_shared_layers") or decoder.num_layers
    try:
        return Gemma4AssistantConfig(
            **fields, backbone_hidden_size=int(values["backbone_hidden_size"]),
            use_ordered_embeddings=bool(values["use_ordered_embeddings"]),
            num_centroids=int(values["num_centroids"]),
            centroid_intermediate_top_k=int(values["centroid_intermediate_top_k"]))
    except (TypeError, ValueError) as error:
        raise HuggingFaceFormatError(f"{path}: {error}") from error


def assistant_tensor_names(config: Gemma4AssistantConfig) -> dict:
    """{our weight path (``Gemma4Assistant.weights_by_path``): transformers tensor name}."""
    names = {ours: f"model.{theirs}" for ours, theirs in hf_tensor_names(config).items()}
    return {**names, **PROJECTIONS, **(ORDERED if config.use_ordered_embeddings else {})}


def plan_assistant_tensors(folder: str, config: Gemma4AssistantConfig) -> dict:
    """{file: [(our weight path, tensor name, None)]}, after checking every tensor and shard exists."""
    located = tensor_files(folder)
    plan = {}
    for ours, name in assistant_tensor_names(config).items():
        if name not in located:
            raise HuggingFaceFormatError(f"{folder}: tensor {name!r} is missing (needed for {ours}); "
                                         f"found {len(located)} tensors, e.g. {sorted(located)[:3]}")
        plan.setdefault(shard_of(folder, located, name), []).append((ours, name, None))
    return plan


def load_hf_assistant(path, dtype=None) -> Gemma4Assistant:
    """A ``Gemma4Assistant`` from a transformers folder (or its config.json / a weight file)."""
    folder = folder_of(path)
    config = assistant_config_from_hf(read_config_json(folder), os.path.join(folder, CONFIG_FILE), model_name(folder))
    plan = plan_assistant_tensors(folder, config)          # every problem with the files, before allocating
    model = Gemma4Assistant(config, dtype=dtype, random_init=False)
    load_hf_weights(model, folder, plan)
    if config.use_ordered_embeddings:
        ordering = ops.convert_to_numpy(model.ordered_embedding.token_ordering)
        if not np.array_equal(np.sort(ordering), np.arange(config.vocab_size)):
            raise HuggingFaceFormatError(f"{folder}: tensor 'masked_embedding.token_ordering' is not a permutation "
                                         f"of the {config.vocab_size} token ids")
    return model


def load_assistant(source, dtype=None) -> Gemma4Assistant:
    """A Gemma 4 assistant from a folder or a handle (``hf://google/gemma-4-E2B-it-assistant``), for
    ``model.generate(..., speculative=gemma_kit.Assistant(assistant, max_draft=4))``."""
    from . import resolve

    return load_hf_assistant(resolve(source), dtype=dtype)
