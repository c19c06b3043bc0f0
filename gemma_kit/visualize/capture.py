"""Run a model once and keep what happens inside: attention, masks, gates, residual streams.

    cap = run_and_capture(model, "The cat sat on the mat.")
    cap.attention[3]        # (batch, heads, queries, keys) float32 probabilities of layer 3
    cap.masks[3]            # (batch, queries, keys) bool: the exact mask layer 3 used
    cap.hidden[3]           # (batch, seq, width): the residual stream after layer 3 (for the logit lens)
    cap.experts[3]          # (batch, seq, experts): Gemma 4 MoE routing weights of layer 3 (None without experts)

The backbones fill a ``capture`` dict when one is passed to ``backbone(ids, capture=...)``;
this file only calls that and turns the tensors into NumPy. The probabilities are the
softmax the layer really computed, with masked entries set to exactly zero, so a
sliding-window layer (Gemma 2/3 "local") shows zeros more than ``sliding_window``
tokens back and a global layer does not. They match transformers' eager
``output_attentions`` on the same weights (tests/test_visualize.py).

Gemma 4: every layer has its attention probabilities, a layer that borrows another's
keys and values (KV sharing) included; a global layer's heads are wider (``global_head_dim``)
but its probabilities are (batch, heads, queries, keys) like the others'. In a
mixture-of-experts model (26B-A4B) each layer also routes every token to ``k`` of its
experts: ``experts`` keeps the weight each expert got (zero for the unchosen ones, the
chosen ``k`` summing to one before ``per_expert_scale``; see ``models/gemma4/moe.py``).

For RecurrentGemma (Griffin) the recurrent blocks have no attention; instead we keep
the RG-LRU's two gates and its *effective decay* ``a_t = exp(-8 * gate_a * softplus(a_param))``
per token and channel (0 at a document start, where the state resets); see
``gemma_kit/models/griffin/rg_lru.py``.

Capture is a separate forward pass, outside the compiled generation path: ``generate``
never passes a ``capture`` dict, so it is neither slowed nor changed.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Union

import keras
import numpy as np
from keras import ops

from ..compile import compile_model_function
from ..model import as_token_batch


@dataclasses.dataclass
class Capture:
    """Everything one forward pass showed us, as NumPy arrays (one list entry per layer / block)."""
    token_ids: np.ndarray                         # (batch, seq) int32
    tokens: List[List[str]]                       # printable token pieces, per batch row
    layer_kinds: List[str]                        # "local"/"global" (Gemma) or "recurrent"/"attention" (Griffin)
    windows: List[Optional[int]]                  # most keys a query may see in that layer; None = all before it
    # (batch, heads, queries, keys) float32, None for recurrent blocks; a padding query's row is all zeros
    attention: List[Optional[np.ndarray]]
    masks: List[Optional[np.ndarray]]             # (batch, queries, keys) bool, None for recurrent blocks
    hidden: List[np.ndarray]                      # (batch, seq, width): residual stream after each layer
    # Griffin's RG-LRU, per block (batch, seq, lru_width) float32, None if not recurrent: "input_gate", "a_gate",
    # "decay" (the effective a_t), "lru_input" (x_t) and "lru_state" (h_t). Empty for Gemma.
    gates: Dict[str, List[Optional[np.ndarray]]]
    # Gemma 4 mixture of experts, per layer (batch, seq, experts) float32 routing weights; None without experts.
    experts: List[Optional[np.ndarray]] = dataclasses.field(default_factory=list)
    backbone: object = dataclasses.field(repr=False, default=None)   # for the logit lens
    tokenizer: object = dataclasses.field(repr=False, default=None)

    @property
    def num_layers(self) -> int:
        return len(self.layer_kinds)

    @property
    def seq_len(self) -> int:
        return int(self.token_ids.shape[1])

    @property
    def attention_layers(self) -> List[int]:
        """Indices of the layers that have attention (all of them for Gemma, one in three for Griffin)."""
        return [i for i, probs in enumerate(self.attention) if probs is not None]

    @property
    def recurrent_layers(self) -> List[int]:
        return [i for i, gate in enumerate(self.gates.get("decay", [])) if gate is not None]

    @property
    def expert_layers(self) -> List[int]:
        """Indices of the layers with a mixture of experts (every layer of Gemma 4 26B-A4B, else none)."""
        return [i for i, weights in enumerate(self.experts) if weights is not None]


def token_labels(tokenizer, ids: Sequence[int]) -> List[str]:
    """Readable token pieces: SentencePiece's "▁" shown as a space; ids when there is no tokenizer."""
    if tokenizer is None:
        return [str(int(i)) for i in ids]
    return [tokenizer.id_to_token(int(i)).replace("▁", " ") for i in ids]


def _as_ids(model, inputs, vocab_size) -> np.ndarray:
    if isinstance(inputs, str):
        if not getattr(model, "tokenizer", None):          # a model loaded without one has a falsy stand-in
            raise ValueError("Text needs a model with a tokenizer: pass token ids instead, or a GemmaModel")
        inputs = [model.encode_prompt(inputs)]                              # <bos> + the text's tokens
    ids = np.asarray(inputs)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"inputs must be text or integer token ids, got an array of {ids.dtype}")
    return as_token_batch(ids.astype(np.int32), vocab_size)                 # (batch, seq), range-checked


def _forward(backbone):
    """A function ids -> the filled capture dict, run eagerly or compiled (``compile.py``).

    A backbone says which suits it (``compile_capture``): Gemma runs eagerly, a handful of large
    operations per layer; Griffin's parallel scan is dozens of tiny operations, so it runs compiled.
    Either way this is its own function, never the generation program.
    """
    def forward(inputs):                 # token ids, or {"token_ids", "segment_pos"}
        found = {}
        # `.call`, not `backbone(...)`: Keras' __call__ copies dict arguments, and we need ours filled.
        backbone.call(inputs, capture=found)
        return found
    # On PyTorch "compiled" means eager under torch.no_grad(): no autograd graph is kept.
    compiled = backbone.compile_capture or keras.config.backend() == "torch"
    return compile_model_function(backbone, forward) if compiled else forward


def run_and_capture(model, inputs: Union[str, Sequence[int], np.ndarray], segment_pos=None) -> Capture:
    """Run ``model`` (a ``GemmaModel`` or a Gemma/Griffin backbone) on ``inputs`` and capture its insides.

    inputs: text (a ``GemmaModel`` encodes it with ``<bos>`` first) or token ids (seq,) / (batch, seq).
    segment_pos: each token's position in its document, shaped like the ids (0 starts a new document:
    attention stops looking back there, and Griffin's recurrence resets); by default one document.
    """
    backbone = getattr(model, "backbone", model)
    tokenizer = getattr(model, "tokenizer", None) or None
    ids = _as_ids(model, inputs, backbone.config.vocab_size)

    feed = ops.convert_to_tensor(ids)
    if segment_pos is not None:
        segment_pos = np.asarray(segment_pos, np.int32)
        if segment_pos.size != ids.size:
            raise ValueError(f"segment_pos has {segment_pos.size} entries for {ids.size} tokens")
        segment_pos = segment_pos.reshape(ids.shape)
        feed = {"token_ids": feed, "segment_pos": ops.convert_to_tensor(segment_pos)}
    found = _forward(backbone)(feed)

    def numpy(tensors, dtype=None):
        return [None if t is None else np.asarray(ops.convert_to_numpy(t), dtype) for t in tensors]

    kinds = [block.layer_type for block in backbone.blocks]
    # Keys a query may see: lookback + 1 (its own included) on a windowed attention layer, else all.
    windows = [block.lookback + 1 if block.attends and block.lookback is not None else None
               for block in backbone.blocks]
    gates = {name: numpy(found[name], np.float32) for name in backbone.capture_keys
             if name not in ("attention", "experts")}                        # Griffin's RG-LRU
    experts = numpy(found.get("experts") or [None] * len(kinds), np.float32)
    return Capture(token_ids=ids, tokens=[token_labels(tokenizer, row) for row in ids], layer_kinds=kinds,
                   windows=windows, attention=numpy(found["attention"], np.float32),
                   masks=numpy(found["mask"], bool), hidden=numpy(found["hidden"], np.float32), gates=gates,
                   experts=experts, backbone=backbone, tokenizer=tokenizer)
