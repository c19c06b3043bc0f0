"""The decoder skeleton every family shares: embed, run the blocks, norm, tied output.

    x = embed(token_ids) * embedding_scale           # (batch, seq, width)
    for block in blocks: x, cache = block(x, ...)    # the family's residual blocks
    logits = final_norm(x) @ embed.T                 # (batch, seq, vocab), tied weights, float32
    logits = cap * tanh(logits / cap)                # output soft-cap (Gemma 2, Griffin), optional

A family (``models/gemma/backbone.py``, ``models/griffin/backbone.py``) says only
what differs: its width, embedding scale and soft-cap, and which block it stacks.
Everything else is here, once, with one vocabulary:

- ``run_blocks(token_ids, positions, masks, caches, time, capture)``: the forward pass;
- ``call`` / ``hidden_states``: every position at once (scoring, training);
- ``init_cache`` / ``extend``: generation. ``extend`` runs a *chunk* of tokens at
  time steps ``time ... time + seq - 1`` against the cache: ``prefill`` is a chunk
  at time 0, ``decode`` a chunk of one token.

Every block answers the same questions: ``layer_type`` (its key in ``masks``),
``attends`` and ``lookback`` (the window rule, ``nn/masks.py``), ``kv_sharing``,
``init_cache``, and ``block(x, positions, mask, cache=, time=, return_internals=)``
returning ``(x, new_cache)`` plus a dict of internals when asked (``capture_keys``).

Two Gemma 4 additions pass through the same loop. *KV sharing*: a block whose
``kv_sharing`` is ``"store"`` also returns the keys and values it read, and the
later ``"reuse"`` blocks of its layer type attend to those (``shared_kv=``)
instead of keeping their own. *Per-layer embeddings*: when the family sets
``per_layer_embedding``, block ``i`` also gets its slice ``per_layer_input=``.

The residual stream ``x`` is kept in float32 when the model computes in float16
(``nn/precision.py``: Gemma's activations pass float16's 65,504); the blocks take it
as it is, and ``hidden_states`` (after the final norm) is then float32 too.

Time and position: every token has a *time step* (its column in the padded
batch) and a *position* (its index in its own sequence, which RoPE sees and
where Griffin's recurrence resets at 0). A left-padded prompt whose real tokens
begin at ``start`` has positions ``max(time - start, 0)``: every pad is a
one-token document and the first real token starts a fresh one.
"""

import contextlib

import keras
from keras import ops

from . import kv_cache
from .int8 import ReversibleEmbedding, built_in_int8, float_view
from .masks import attention_mask, document_ids
from .precision import residual_dtype
from .rms_norm import RMSNorm


class LanguageModelBackbone(keras.Model):
    """Subclasses set ``config_class`` and call ``__init__`` with their numbers and block class."""

    config_class = None              # GemmaConfig or GriffinConfig: how get_config's dict becomes a config
    capture_keys = ("attention",)    # what each block's internals dict may hold (``gemma_kit.visualize``)
    compile_capture = False          # run the capture pass compiled (many small ops) or eagerly

    def __init__(self, config, *, width, embedding_scale, output_soft_cap, embedding_stddev, norm_eps,
                 block_class, norm_unit_offset: bool = True, dtype=None, random_init: bool = True, **kwargs):
        """``random_init=False`` fills the weights with zeros: loaders overwrite every weight
        anyway, and drawing millions of random numbers costs seconds."""
        super().__init__(dtype=dtype, name=kwargs.pop("name", config.name), **kwargs)
        self.config, self.width, self.embedding_scale = config, width, embedding_scale
        policy = self.dtype_policy
        kernel_init = "glorot_uniform" if random_init else "zeros"
        embed_init = keras.initializers.RandomNormal(stddev=embedding_stddev) if random_init else "zeros"
        # Keras' tied embedding (``ReversibleEmbedding``): `reverse=True` multiplies by its transpose (the output
        # layer); ours only changes its int8 form (``nn/int8.py``).
        self.token_embedding = ReversibleEmbedding(
            config.vocab_size, width, tie_weights=True, logit_soft_cap=output_soft_cap,
            reverse_dtype="float32", embeddings_initializer=embed_init, name="token_embedding", dtype=policy)
        self.blocks = [block_class(config, i, kernel_initializer=kernel_init, name=f"block_{i}", dtype=policy)
                       for i in range(config.num_layers)]
        self.final_norm = RMSNorm(norm_eps, unit_offset=norm_unit_offset, name="final_norm", dtype=policy)
        self.per_layer_embedding = self.make_per_layer_embedding(random_init)
        self.build(None)

    def make_per_layer_embedding(self, random_init: bool):
        """Gemma 4 E2B/E4B return their PLE layer here; the other models have none."""
        return None

    def build(self, input_shape=None):
        self.token_embedding.build((None, None))
        for block in self.blocks:
            block.build((None, None, self.width))
        self.final_norm.build((None, None, self.width))
        if self.per_layer_embedding is not None:
            self.per_layer_embedding.build()
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
        return float_view(weights)          # an int8 weight and its scale appear as one float weight

    # -- the forward pass, shared by every entry point ------------------------------------------
    def run_blocks(self, token_ids, positions, masks, caches=None, time=None, capture=None):
        """Hidden states (batch, seq, width) after the final norm, and the new caches.

        masks: {layer_type: (batch, seq, keys) bool}; caches: None or one entry per block;
        time: the time step of ``token_ids[:, 0]`` when there are caches.
        ``capture``: an optional dict (``gemma_kit.visualize``; generation never passes one),
        filled with one entry per block in each list: ``capture_keys`` (attention probabilities
        (batch, heads, queries, keys), Griffin's gates; None where a block has none), ``"mask"``
        (the boolean mask the block used) and ``"hidden"`` (the residual stream after the block).
        """
        x = self.token_embedding(token_ids)                                   # (batch, seq, width)
        x = x * ops.cast(self.embedding_scale, x.dtype)
        per_layer = None if self.per_layer_embedding is None else self.per_layer_embedding(token_ids, x)
        x = ops.cast(x, residual_dtype(self.dtype_policy))     # float32 under float16 (nn/precision.py)
        shared = {}                            # layer_type -> (keys, values) its "store" block read
        new_caches = []
        for i, block in enumerate(self.blocks):
            mask = masks.get(block.layer_type)
            extra = {} if per_layer is None else {"per_layer_input": per_layer[:, :, i]}   # (batch, seq, dim)
            if block.kv_sharing == "reuse":
                extra["shared_kv"] = shared[block.layer_type]
            x, cache, *internals = block(x, positions, mask, cache=None if caches is None else caches[i],
                                         time=time, return_internals=capture is not None, **extra)
            if block.kv_sharing == "store":
                shared[block.layer_type], *internals = internals
            new_caches.append(cache)
            if capture is not None:
                for key in self.capture_keys:
                    capture.setdefault(key, []).append(internals[0].get(key))
                capture.setdefault("mask", []).append(mask)
                capture.setdefault("hidden", []).append(x)
        return self.final_norm(x), new_caches

    def _masks(self, query_times, key_times_of, key_valid_of, segments=None):
        """One mask per layer type that attends; ``key_times_of(block)``/``key_valid_of`` give its keys."""
        masks = {}
        for block in self.blocks:
            if block.attends and block.layer_type not in masks:
                key_times = key_times_of(block)
                masks[block.layer_type] = attention_mask(query_times, key_times, key_valid_of(key_times),
                                                         block.lookback, segments, segments)
        return masks

    # -- entry point 1: every position (scoring, training) ----------------------------------------
    def logits_from_hidden(self, hidden):
        """Tied output layer: (..., width) -> float32 (..., vocab_size), soft-capped if configured."""
        return self.token_embedding(hidden, reverse=True)

    def call(self, inputs, capture=None):
        return self.logits_from_hidden(self.hidden_states(inputs, capture=capture))   # (batch, seq, vocab)

    def hidden_states(self, inputs, capture=None):
        """``call`` without the output layer: (batch, seq, width) after the final norm.

        inputs: token ids (batch, seq), or a dict with ``"token_ids"`` and optionally
        ``"padding_mask"`` (batch, seq) bool and ``"segment_pos"`` (batch, seq) int, each token's
        position in its own document (0 starts a new one; packed sequences). Training needs
        logits only where the loss is (``gemma_kit.tuning.ResponseLM``), hence this half.
        """
        token_ids, padding_mask, segment_pos = inputs, None, None
        if isinstance(inputs, dict):
            token_ids, padding_mask, segment_pos = (inputs["token_ids"], inputs.get("padding_mask"),
                                                    inputs.get("segment_pos"))
        token_ids = ops.cast(token_ids, "int32")
        batch, seq = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        times = ops.broadcast_to(ops.arange(seq, dtype="int32")[None, :], (batch, seq))
        padding_mask = ops.ones((batch, seq), "bool") if padding_mask is None else ops.cast(padding_mask, "bool")
        if segment_pos is None:                  # one document per row; pads before it are documents of their own
            segment_pos = ops.maximum(ops.cumsum(ops.cast(padding_mask, "int32"), axis=1) - 1, 0)
        segment_pos = ops.cast(segment_pos, "int32")
        masks = self._masks(times, lambda block: times, lambda _: padding_mask, document_ids(segment_pos))
        hidden, _ = self.run_blocks(token_ids, segment_pos, masks, capture=capture)
        return hidden

    # -- entry point 2: generation, one chunk at a time --------------------------------------------
    def init_cache(self, batch_size, max_length, chunk=1):
        """One entry per block, each of fixed size (``block.init_cache``), for up to ``max_length`` steps.

        ``chunk``: the longest chunk that may later be *rolled back* (speculative decoding writes
        ``chunk`` tokens, then keeps fewer). A sliding ring then keeps ``chunk - 1`` slots more than
        its window, so the steps a rejected chunk overwrote were outside every later query's window.
        """
        return [block.init_cache(batch_size, max_length, chunk) for block in self.blocks]

    def extend(self, token_ids, time, start, caches, all_logits=False, return_hidden=False):
        """Run a chunk ``token_ids`` (batch, seq) at time steps ``time ... time + seq - 1`` against ``caches``.

        ``start`` (batch,): where each left-padded row's real tokens begin. ``time`` is the Python
        int 0 for a prompt (the cache is empty), else a scalar. Returns the float32 logits of the
        chunk's last position (batch, vocab), or of every position (batch, seq, vocab) with
        ``all_logits`` (speculative decoding's verify pass), and the caches with the chunk appended;
        ``return_hidden`` adds the hidden states (after the final norm) those logits came from,
        (batch, width) or (batch, seq, width): what a Gemma 4 assistant drafts from.
        """
        batch, seq = ops.shape(token_ids)[0], token_ids.shape[1]
        start = ops.cast(start, "int32")[:, None]                             # (batch, 1)
        times = ops.arange(seq, dtype="int32")[None, :] + (time if kv_cache.starts_empty(time)
                                                           else ops.cast(time, "int32"))
        times = ops.broadcast_to(times, (batch, seq))                         # (batch, seq)
        slots = {block.layer_type: cache[0].shape[1] for block, cache in zip(self.blocks, caches)
                 if block.attends and block.kv_sharing != "reuse"}                # a borrower keeps no ring
        masks = self._masks(times, lambda block: kv_cache.key_times(time, slots[block.layer_type], times),
                            lambda key_times: key_times >= start)            # not padding, slot written
        hidden, caches = self.run_blocks(token_ids, ops.maximum(times - start, 0), masks, caches, time)
        hidden = hidden if all_logits else hidden[:, -1]
        logits = self.logits_from_hidden(hidden)
        return (logits, caches, hidden) if return_hidden else (logits, caches)

    def prefill(self, token_ids, start, caches):
        """A left-padded prompt (batch, seq) into an empty cache: ``extend`` at time 0."""
        return self.extend(token_ids, 0, start, caches)

    def decode(self, token_ids, time, start, caches):
        """One step: ``token_ids`` (batch, 1) at time step ``time`` (a scalar): ``extend`` with one token."""
        return self.extend(token_ids, time, start, caches)

    # -- Keras serialization: the config travels as a dict, so `model.save("x.keras")` round-trips --
    def get_config(self):
        config = {"config": self.config.to_dict(), "dtype": self.dtype_policy.name, "name": self.name}
        if self.token_embedding.quantization_mode == "int8":       # model.quantize("int8") was called
            config["quantize"] = "int8"
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        with built_in_int8() if config.pop("quantize", None) == "int8" else contextlib.nullcontext():
            return cls(cls.config_class.from_dict(config.pop("config")), **config)
