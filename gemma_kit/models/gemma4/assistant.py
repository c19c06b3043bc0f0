"""Gemma 4's assistant: a small multi-token-prediction (MTP) drafter that reads the target's own cache.

Each Gemma 4 checkpoint has an ``-assistant`` sibling (``google/gemma-4-E2B-it-assistant``:
4 layers of width 256 for a target of width 1536). It guesses the next few tokens for
speculative decoding (``speculative.py``; the drafter is ``drafting.Assistant``) from what
the target already computed, so it has no embedding pass, no prompt pass and no cache:

    x = pre_projection(concat(target_embed(token) * sqrt(d_target), h))   # (batch, 1, 2 d_target) -> (batch, 1, d)
    for block in blocks:            # Gemma 4 blocks that all *borrow* keys and values ("reuse"):
        x = block(x, position, shared_kv=target's K/V of its last sliding / last global layer)
    x = final_norm(x)
    logits = x @ embed.T            # or the centroid-masked head below (use_ordered_embeddings)
    h = post_projection(x)          # (batch, 1, d_target): the next draft step's "hidden state"

Step 1 takes ``h``, the target's hidden state (after its final norm) at the last token it
has read, and ``token``, the token the target chose after it; step i + 1 takes step i's
``h`` and its argmax. Every step of a round keeps the same RoPE position: that of ``token``.

Mapping to the peer, transformers 5 ``models/gemma4_assistant/modeling_gemma4_assistant.py``
(``Gemma4AssistantForCausalLM``) and ``generation/candidate_generator.py``
(``SinglePositionMultiTokenCandidateGenerator``); keras-hub's ``Gemma4AssistantCausalLM``
is the same network:

| transformers                                     | here                                                |
|--------------------------------------------------|-----------------------------------------------------|
| ``Gemma4AssistantConfig``, its ``text_config``   | ``Gemma4AssistantConfig``: every layer borrows K/V  |
| ``pre_projection``, ``post_projection``          | the same names (``nn.int8.Dense``)                  |
| ``model`` (``Gemma4TextModel``), ``model.norm``  | ``blocks`` (``Gemma4Block``), ``final_norm``        |
| ``lm_head`` (tied to ``model.embed_tokens``)     | ``token_embedding`` (tied)                          |
| ``Gemma4AssistantMaskedEmbedder``                | ``OrderedEmbedding`` (the one new layer)            |
| ``shared_kv_states``, ``create_attention_masks`` | ``over_target_cache``: the target's rings, by time  |

Which keys: the token at position p sees every target key before it (positions < p); a
sliding layer only the last ``sliding_window + 1`` of them (transformers' bidirectional
window is inclusive: ``|q - k| <= window``). After a verify pass transformers cuts the
target's keys to the new text's length, which after a rejection keeps the key of the first
rejected draft (at the new token's own position) and, in sliding layers past the window,
those of every drafted token; here the ring is masked by time, which gives transformers'
keys exactly after the prompt and after a round with every draft accepted.
The logits are not soft-capped (transformers never caps them; keras-hub applies the
target's cap); the real assistants' configs say ``final_logit_softcapping: null`` anyway.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from ...nn import kv_cache
from ...nn.backbone import LanguageModelBackbone
from ...nn.int8 import Dense, ReversibleEmbedding
from ...nn.masks import attention_mask
from ...nn.precision import residual_dtype
from ...nn.rms_norm import RMSNorm
from ..gemma.config import LOCAL, GemmaConfig
from .block import Gemma4Block
from .config import Gemma4Config


@dataclasses.dataclass(frozen=True)
class Gemma4AssistantConfig(Gemma4Config):
    """A Gemma 4 decoder whose every layer borrows the target's keys and values, plus the assistant's numbers."""

    backbone_hidden_size: int = 1536          # the target's width [backbone_hidden_size]
    use_ordered_embeddings: bool = False      # the centroid-masked output head (E2B, E4B assistants)
    num_centroids: int = 2048
    centroid_intermediate_top_k: int = 32     # clusters kept per step: 32 x 128 of 262,144 tokens
    name: str = "gemma4_assistant"

    def __post_init__(self):
        # Gemma4Config's checks would refuse this decoder: nothing in it lends keys, every layer borrows.
        GemmaConfig.__post_init__(self)
        problems = []
        if self.num_kv_shared_layers != self.num_layers:
            problems.append(f"num_kv_shared_layers={self.num_kv_shared_layers}: every one of the "
                            f"{self.num_layers} layers of an assistant borrows the target's keys and values")
        if self.per_layer_input_dim or self.num_experts or self.use_double_wide_mlp:
            problems.append("an assistant has no per-layer embeddings, experts or double-wide MLP")
        if self.use_ordered_embeddings and (self.vocab_size % self.num_centroids
                                            or not 0 < self.centroid_intermediate_top_k <= self.num_centroids):
            problems.append(f"ordered embeddings need vocab_size ({self.vocab_size}) divisible by num_centroids "
                            f"({self.num_centroids}) and 0 < centroid_intermediate_top_k "
                            f"({self.centroid_intermediate_top_k}) <= num_centroids")
        self.check(problems, positive=("backbone_hidden_size",))


@keras.saving.register_keras_serializable(package="gemma_kit")
class OrderedEmbedding(keras.layers.Layer):
    """The centroid-masked output head: logits for the tokens of the ``top_k`` likeliest clusters only.

    The vocabulary is cut into ``num_centroids`` clusters of ``vocab / num_centroids`` tokens;
    ``token_ordering`` lists the token ids cluster by cluster. Every other token gets
    ``min(computed logits) - 1``: the argmax is one of the computed ones.
    """

    def __init__(self, vocab_size, num_centroids, top_k, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.num_centroids, self.top_k = vocab_size, num_centroids, top_k
        self.centroids = Dense(num_centroids, use_bias=False, kernel_initializer=kernel_initializer,
                               name="centroids", dtype=self.dtype_policy)

    def build(self, input_shape):                                       # (batch, seq, hidden_dim)
        self.centroids.build(input_shape)
        self.token_ordering = self.add_weight(name="token_ordering", shape=(self.vocab_size,), dtype="int32",
                                              initializer="zeros", trainable=False)

    def call(self, hidden, embeddings):
        """hidden (batch, seq, d); embeddings: the tied table (vocab, d). Returns float32 (batch, seq, vocab)."""
        batch, seq = ops.shape(hidden)[0], ops.shape(hidden)[1]
        hidden = ops.cast(hidden, "float32")
        _, clusters = ops.top_k(self.centroids(hidden), self.top_k)                 # (batch, seq, top_k)
        members = ops.reshape(self.token_ordering, (self.num_centroids, -1))        # (centroids, per cluster)
        tokens = ops.reshape(ops.take(members, clusters, axis=0), (batch * seq, -1))   # (rows, n): n = top_k * per
        rows = ops.take(ops.cast(embeddings, "float32"), tokens, axis=0)            # (rows, n, d)
        scores = ops.einsum("rd,rnd->rn", ops.reshape(hidden, (batch * seq, -1)), rows)   # (rows, n)
        row = ops.broadcast_to(ops.arange(batch * seq, dtype="int32")[:, None], ops.shape(tokens))
        where = ops.reshape(ops.stack([row, ops.cast(tokens, "int32")], axis=-1), (-1, 2))   # (rows * n, 2)
        logits = ops.zeros((batch * seq, self.vocab_size), "float32") + (ops.min(scores) - 1.0)   # masked value
        logits = ops.scatter_update(logits, where, ops.reshape(scores, (-1,)))
        return ops.reshape(logits, (batch, seq, self.vocab_size))

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "num_centroids": self.num_centroids,
                "top_k": self.top_k}


class Gemma4Assistant(keras.Model):
    """The assistant network; ``drafting.Assistant`` runs it against a target ``GemmaModel``."""

    weights_by_path = LanguageModelBackbone.weights_by_path     # "block_0/attention.query.kernel" -> variable

    def __init__(self, config: Gemma4AssistantConfig, dtype=None, random_init: bool = True, **kwargs):
        super().__init__(dtype=dtype, name=kwargs.pop("name", config.name), **kwargs)
        self.config = config
        init = "glorot_uniform" if random_init else "zeros"
        policy = self.dtype_policy
        dense = dict(use_bias=False, kernel_initializer=init, dtype=policy)
        self.pre_projection = Dense(config.hidden_dim, name="pre_projection", **dense)
        self.blocks = [Gemma4Block(config, i, kernel_initializer=init, name=f"block_{i}", dtype=policy)
                       for i in range(config.num_layers)]
        self.final_norm = RMSNorm(config.rms_norm_eps, unit_offset=False, name="final_norm", dtype=policy)
        self.token_embedding = ReversibleEmbedding(
            config.vocab_size, config.hidden_dim, tie_weights=True, reverse_dtype="float32", name="token_embedding",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02) if random_init else "zeros",
            dtype=policy)
        self.post_projection = Dense(config.backbone_hidden_size, name="post_projection", **dense)
        self.ordered_embedding = None
        if config.use_ordered_embeddings:
            self.ordered_embedding = OrderedEmbedding(config.vocab_size, config.num_centroids,
                                                      config.centroid_intermediate_top_k, kernel_initializer=init,
                                                      name="ordered_embedding", dtype=policy)
        self.build(None)

    def build(self, input_shape=None):
        width = (None, None, self.config.hidden_dim)
        self.pre_projection.build((None, None, 2 * self.config.backbone_hidden_size))
        for layer in (*self.blocks, self.final_norm, self.post_projection, self.ordered_embedding):
            if layer is not None:
                layer.build(width)
        self.token_embedding.build((None, None))
        self.built = True

    def call(self, inputs_embeds, positions, masks, shared_kv):
        """One draft step, as transformers' ``Gemma4AssistantForCausalLM.forward``.

        inputs_embeds: (batch, seq, 2 * backbone_hidden_size), the target's scaled token embedding and
        its hidden state side by side. positions: (batch, seq) int. masks: {layer type: (batch, seq, keys)
        bool}; shared_kv: {layer type: (keys, values)}, each (batch, keys, kv_heads, head_dim).
        Returns float32 logits (batch, seq, vocab) and the next hidden state (batch, seq, backbone_hidden_size).
        """
        x = self.pre_projection(inputs_embeds)                                  # (batch, seq, hidden_dim)
        x = ops.cast(x, residual_dtype(self.dtype_policy))      # float32 under float16, as the target's stream
        for block in self.blocks:                                               # no cache: ``(x, None)``
            x, _ = block(x, positions, masks[block.layer_type], shared_kv=shared_kv[block.layer_type])
        x = self.final_norm(x)
        if self.ordered_embedding is not None:
            logits = self.ordered_embedding(x, self.token_embedding.embeddings)
        else:
            logits = self.token_embedding(x, reverse=True)                      # (batch, seq, vocab) float32
        return logits, self.post_projection(x)

    def over_target_cache(self, token_embedding, hidden, time, start, rings):
        """``call`` against the target's KV rings: transformers' ``shared_kv_states`` and its masks.

        token_embedding, hidden: (batch, 1, backbone_hidden_size), the target's scaled embedding of the
        token at time step ``time`` (a scalar: the target has read every step before it, none after)
        and the state carried from the step before. start: (batch,), where each row's real tokens begin.
        rings: {layer type: (keys, values)}, the ring (batch, slots, kv_heads, head_dim) of the target's
        last layer of that type that keeps one. A slot is read by the time it holds
        (``kv_cache.ring_slot_times``): steps rolled back after a verify pass are in the future, or
        ``sliding_window + chunk`` steps back, out of every window (the target keeps one slot more).
        """
        newest = ops.cast(time, "int32") - 1                                    # the last step the target read
        start = ops.cast(start, "int32")[:, None]                               # (batch, 1)
        batch = ops.shape(start)[0]
        query_times = ops.broadcast_to(newest, (batch, 1))                      # sees keys up to its predecessor
        masks = {}
        for layer_type, (keys, _) in rings.items():
            key_times = ops.broadcast_to(kv_cache.ring_slot_times(newest, keys.shape[1]), (batch, keys.shape[1]))
            lookback = self.config.sliding_window if layer_type == LOCAL else None   # window + 1 keys
            masks[layer_type] = attention_mask(query_times, key_times, key_times >= start, lookback)
        inputs = ops.concatenate([ops.cast(token_embedding, self.compute_dtype),
                                  ops.cast(hidden, self.compute_dtype)], axis=-1)   # (batch, 1, 2 * d_target)
        return self(inputs, query_times + 1 - start, masks, rings)             # position of the embedded token

    def sources_in(self, target_config) -> dict:
        """{layer type: index of the target block whose cache each of our layer types reads}, after
        checking the target can feed this assistant; a ValueError naming what does not match."""
        ours, problems = self.config, []
        if not isinstance(target_config, Gemma4Config):
            raise ValueError(f"A Gemma 4 assistant drafts for a Gemma 4 target, not a {type(target_config).__name__} "
                             f"({getattr(target_config, 'name', '?')!r})")
        for field, theirs in (("vocab_size", target_config.vocab_size),
                              ("backbone_hidden_size", target_config.hidden_dim)):
            if getattr(ours, field) != theirs:
                problems.append(f"its {field} is {getattr(ours, field)} but the target's is {theirs}")
        sources = {}
        for layer_type in dict.fromkeys(ours.layer_types):
            keepers = [i for i, t in enumerate(target_config.layer_types)
                       if t == layer_type and target_config.kv_sharing(i) != "reuse"]
            if not keepers:
                problems.append(f"the target has no {layer_type} layer with keys of its own")
                continue
            source, mine = keepers[-1], ours.layer_types.index(layer_type)
            sources[layer_type] = source
            if target_config.head_dim_of(source) != ours.head_dim_of(mine):
                problems.append(f"its {layer_type} heads have {ours.head_dim_of(mine)} dims, the target's "
                                f"{target_config.head_dim_of(source)}")
            if ours.num_query_heads % target_config.kv_heads_of(source):
                problems.append(f"its {ours.num_query_heads} query heads do not share the target's "
                                f"{target_config.kv_heads_of(source)} {layer_type} KV heads evenly")
        if LOCAL in sources and ours.sliding_window > target_config.sliding_window:
            problems.append(f"its sliding_window {ours.sliding_window} is wider than the target's "
                            f"{target_config.sliding_window}, whose ring would not hold those keys")
        if problems:
            raise ValueError(f"The assistant {ours.name!r} cannot draft for {target_config.name!r}: "
                             + "; ".join(problems))
        return sources
