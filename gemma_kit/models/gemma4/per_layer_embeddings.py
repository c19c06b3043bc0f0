"""Per-layer embeddings (PLE), Gemma 4 E2B and E4B: every layer gets a small embedding of its own.

Besides the usual token embedding (``hidden_dim`` numbers per token), E2B keeps
a second, packed table with ``per_layer_input_dim`` (256) numbers per token *per
layer*. It is huge (262,144 x 35 x 256 = 2.3B numbers for E2B, more than the rest
of the model), but a token only ever reads its own row, so it can stay in slow
memory (CPU RAM, flash) while the rest sits on the accelerator: hence
"effective 2B" (``Gemma4Config.effective_parameters``).

    table   = ple_table[token_ids] * sqrt(dim)                  # (batch, seq, layers, dim): who the token is
    context = norm(x @ W_context * hidden ** -0.5)              # (batch, seq, layers, dim): what it means here
    per_layer_input = (table + context) * 2 ** -0.5            # block i gets per_layer_input[:, :, i]

``x`` is the scaled token embedding the decoder starts from. Inside block i,
after the MLP (``block.py``):

    x = x + norm(W_proj(gelu_tanh(W_gate(x)) * per_layer_input[:, :, i]))
"""

import keras
from keras import ops

from ...nn.int8 import Dense, Embedding
from ...nn.rms_norm import RMSNorm


@keras.saving.register_keras_serializable(package="gemma_kit")
class PerLayerEmbedding(keras.layers.Layer):
    def __init__(self, vocab_size: int, num_layers: int, dim: int, hidden_dim: int, rms_norm_eps: float = 1e-6,
                 embeddings_initializer="uniform", kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.num_layers, self.dim, self.hidden_dim = vocab_size, num_layers, dim, hidden_dim
        self.rms_norm_eps = rms_norm_eps
        policy = self.dtype_policy
        self.token_table = Embedding(vocab_size, num_layers * dim, name="token_table", dtype=policy,
                                                  embeddings_initializer=embeddings_initializer)
        self.context_projection = Dense(num_layers * dim, use_bias=False, name="context_projection",
                                                     kernel_initializer=kernel_initializer, dtype=policy)
        self.context_norm = RMSNorm(rms_norm_eps, unit_offset=False, name="context_norm", dtype=policy)

    def build(self, input_shape=None):
        self.token_table.build((None, None))
        self.context_projection.build((None, None, self.hidden_dim))
        self.context_norm.build((None, None, self.num_layers, self.dim))

    def call(self, token_ids, x):
        """token_ids: (batch, seq) int; x: the scaled token embeddings (batch, seq, hidden_dim)."""
        batch, seq = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        shape = (batch, seq, self.num_layers, self.dim)
        table = ops.reshape(self.token_table(token_ids), shape)                  # (batch, seq, layers, dim)
        table = table * ops.cast(self.dim ** 0.5, table.dtype)
        context = self.context_projection(x) * ops.cast(self.hidden_dim ** -0.5, x.dtype)
        context = self.context_norm(ops.reshape(context, shape))                 # (batch, seq, layers, dim)
        return (context + ops.cast(table, context.dtype)) * ops.cast(2 ** -0.5, context.dtype)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "num_layers": self.num_layers,
                "dim": self.dim, "hidden_dim": self.hidden_dim, "rms_norm_eps": self.rms_norm_eps}
