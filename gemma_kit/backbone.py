"""The Gemma decoder: token embedding, a stack of decoder blocks, tied output.

    x = embed(token_ids) * sqrt(hidden_dim)          # (batch, seq, hidden_dim)
    for block in blocks: x = block(x)                # local or global attention + MLP
    logits = final_norm(x) @ embed.T                 # (batch, seq, vocab), tied weights
    logits = final_soft_cap * tanh(logits / final_soft_cap)   (Gemma 2)

Three entry points share that one forward pass:
- ``call(token_ids or {"token_ids", "padding_mask"})``: logits for every
  position, for scoring and training (``model.fit``);
- ``prefill(...)``: run a (left-padded) prompt, fill the KV cache, return the
  logits of the last position;
- ``decode(...)``: one new token per sequence against the cache.

Masks: every token has a *time step* (its column in the padded batch) and a
*position* (its index in its own sequence, which RoPE sees). A query may see a
key when the key is real (not padding), not in the future, and, on a local
layer, fewer than ``sliding_window`` steps back.
"""

import keras
from keras import ops
from keras_hub.layers import ReversibleEmbedding

from .config import LOCAL, GemmaConfig
from .layers import DecoderBlock, RMSNorm, ring_slot_times
from .lm_backbone import LanguageModelBackbone


def attention_mask(query_times, key_times, key_valid, window=None):
    """(batch, queries, keys) bool: causal, padding and optional sliding-window mask.

    query_times: (batch, queries) int; key_times, key_valid: (batch, keys).
    """
    q, k = query_times[:, :, None], key_times[:, None, :]
    mask = ops.logical_and(k <= q, key_valid[:, None, :])
    if window is not None:
        mask = ops.logical_and(mask, (q - k) < window)
    return mask


@keras.saving.register_keras_serializable(package="gemma_kit")
class GemmaBackbone(LanguageModelBackbone):
    config_class = GemmaConfig

    def __init__(self, config: GemmaConfig, dtype=None, random_init: bool = True, **kwargs):
        """``random_init=False`` fills the weights with zeros: loaders overwrite every weight
        anyway, and drawing 268M random numbers costs seconds."""
        super().__init__(config, dtype=dtype, **kwargs)
        policy = self.dtype_policy
        kernel_init = "glorot_uniform" if random_init else "zeros"
        embed_init = keras.initializers.RandomNormal(stddev=0.02) if random_init else "zeros"
        self.token_embedding = ReversibleEmbedding(
            config.vocab_size, config.hidden_dim, tie_weights=True, logit_soft_cap=config.final_soft_cap,
            reverse_dtype="float32", embeddings_initializer=embed_init,
            name="token_embedding", dtype=policy)
        self.blocks = [DecoderBlock(config, i, kernel_initializer=kernel_init, name=f"block_{i}", dtype=policy)
                       for i in range(config.num_layers)]
        self.final_norm = RMSNorm(config.rms_norm_eps, name="final_norm", dtype=policy)
        self.build(None)

    def build(self, input_shape=None):
        self.token_embedding.build((None, None))
        for block in self.blocks:
            block.build((None, None, self.config.hidden_dim))
        self.final_norm.build((None, None, self.config.hidden_dim))
        self.built = True

    def weights_by_path(self) -> dict:
        """{``"block_3/attention.query.kernel"``-style path: variable} for every weight.

        Checkpoint loaders and exporters map these paths to their format's tensor names.
        """
        weights = {}
        for variable in self.weights:      # variable.path: "<model>/block_3/attention/query/kernel"
            layers, name = variable.path.split("/", 1)[1].rsplit("/", 1)
            top, _, inner = layers.partition("/")
            weights[f"{top}/{inner.replace('/', '.')}.{name}" if inner else f"{top}.{name}"] = variable
        return weights

    # -- the forward pass, shared by every entry point ------------------------------------------
    def _masks(self, query_times, key_times, key_valid):
        """One mask per layer type; global and local layers differ only in the window."""
        masks = {"global": attention_mask(query_times, key_times["global"], key_valid["global"])}
        if LOCAL in self.config.layer_types:
            masks[LOCAL] = attention_mask(query_times, key_times[LOCAL], key_valid[LOCAL],
                                          window=self.config.sliding_window)
        return masks

    def run_decoder(self, token_ids, positions, masks, caches=None, write_index=None, capture=None):
        """Hidden states (batch, seq, hidden_dim) after the final norm, and the new caches.

        ``capture``: an optional dict; filled with per-layer attention
        probabilities (``"attention"``, (batch, heads, queries, keys), exact zeros where
        masked), the boolean mask each layer used (``"mask"``, (batch, queries, keys))
        and the residual streams after each block (``"hidden"``). ``gemma_kit.visualize``
        reads it; generation never passes it.
        """
        x = self.token_embedding(token_ids)                                  # (batch, seq, hidden_dim)
        x = x * ops.cast(self.config.hidden_dim ** 0.5, x.dtype)
        new_caches = []
        for i, block in enumerate(self.blocks):
            mask = masks[LOCAL if block.layer_type == LOCAL else "global"]
            out = block(x, positions, mask, cache=None if caches is None else caches[i],
                        write_index=write_index, return_probs=capture is not None)
            x = out[0]
            new_caches.append(out[1])
            if capture is not None:
                capture.setdefault("attention", []).append(out[2])
                capture.setdefault("mask", []).append(mask)
                capture.setdefault("hidden", []).append(x)
        return self.final_norm(x), new_caches

    # -- entry point 1: every position (scoring, training) ----------------------------------------
    def hidden_states(self, inputs, capture=None):
        """``call`` without the output layer: (batch, seq, hidden_dim) after the final norm.

        Training needs logits only where the loss is (``gemma_kit.tuning.ResponseLM``).
        """
        if isinstance(inputs, dict):
            token_ids, padding_mask = inputs["token_ids"], inputs.get("padding_mask")
        else:
            token_ids, padding_mask = inputs, None
        token_ids = ops.cast(token_ids, "int32")
        batch, seq = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        if padding_mask is None:
            padding_mask = ops.ones((batch, seq), dtype="bool")
        padding_mask = ops.cast(padding_mask, "bool")
        times = ops.broadcast_to(ops.arange(seq, dtype="int32")[None, :], (batch, seq))
        positions = ops.maximum(ops.cumsum(ops.cast(padding_mask, "int32"), axis=1) - 1, 0)
        both = {"global": times, LOCAL: times}
        valid = {"global": padding_mask, LOCAL: padding_mask}
        hidden, _ = self.run_decoder(token_ids, positions, self._masks(times, both, valid), capture=capture)
        return hidden

    # -- entry points 2 and 3: generation with a KV cache ----------------------------------------
    def cache_lengths(self, max_length):
        """Slots per layer: every step for global layers, at most the window for local ones."""
        window = self.config.sliding_window
        return [min(window, max_length) if t == LOCAL else max_length for t in self.config.layer_types]

    def init_cache(self, batch_size, max_length):
        shape = (batch_size, None, self.config.num_kv_heads, self.config.head_dim)
        dtype = self.compute_dtype
        return [(ops.zeros((shape[0], n) + shape[2:], dtype), ops.zeros((shape[0], n) + shape[2:], dtype))
                for n in self.cache_lengths(max_length)]

    def prefill(self, token_ids, start, caches):
        """Run left-padded prompts (batch, seq) whose real tokens begin at ``start`` (batch,).

        Returns the float32 logits of the last position (batch, vocab) and the filled caches.
        """
        batch, seq = ops.shape(token_ids)[0], token_ids.shape[1]
        times = ops.broadcast_to(ops.arange(seq, dtype="int32")[None, :], (batch, seq))
        start = ops.cast(start, "int32")[:, None]                            # (batch, 1)
        valid = times >= start
        positions = ops.maximum(times - start, 0)
        masks = self._masks(times, {"global": times, LOCAL: times}, {"global": valid, LOCAL: valid})
        hidden, caches = self.run_decoder(token_ids, positions, masks, caches=caches, write_index=0)
        return self.logits_from_hidden(hidden[:, -1]), caches

    def decode(self, token_ids, time, start, caches):
        """One step: ``token_ids`` (batch, 1) at time step ``time`` (a scalar); returns (logits, caches)."""
        time = ops.cast(time, "int32")
        start = ops.cast(start, "int32")[:, None]                            # (batch, 1)
        query_times = ops.broadcast_to(time, ops.shape(start))               # (batch, 1)
        key_times, key_valid = {}, {}
        lengths = dict(zip(self.config.layer_types, (c[0].shape[1] for c in caches)))
        for kind, length in lengths.items():
            slot_times = ring_slot_times(time, length)                       # (1, cache_len)
            key_times[kind] = ops.broadcast_to(slot_times, (ops.shape(start)[0], length))
            key_valid[kind] = key_times[kind] >= start
        if "global" not in key_times:                                        # every layer is local
            key_times["global"], key_valid["global"] = key_times[LOCAL], key_valid[LOCAL]
        masks = self._masks(query_times, key_times, key_valid)
        hidden, caches = self.run_decoder(token_ids, query_times - start, masks, caches=caches, write_index=time)
        return self.logits_from_hidden(hidden[:, -1]), caches
