"""The Real-Gated Linear Recurrent Unit (RG-LRU), Griffin's recurrence (De et al. 2024, section 2.4).

For every channel of ``x_t`` (batch, seq, lru_width) the RG-LRU keeps one number
of state ``h_t`` and updates it with an input-dependent decay ``a_t`` in (0, 1):

    gate_x = sigmoid(input_gate(x_t))                 # how much of the input to let in
    gate_a = sigmoid(a_gate(x_t))                     # how fast to forget
    log_a  = -8 * gate_a * softplus(a_param)          # a_t = exp(log_a) = sigma(Lambda) ** (8 gate_a)
    h_t    = a_t * h_{t-1} + sqrt(1 - a_t ** 2) * (gate_x * x_t)

The two gates are *block-diagonal* linear layers (``num_heads`` independent
blocks), which is cheaper than a full ``lru_width x lru_width`` matrix. The
``sqrt(1 - a_t^2)`` factor keeps the state's scale steady whatever the decay.
At a document start (``segment_pos == 0``) the recurrence *resets*: ``a_t = 0``
and the multiplier is 1, so ``h_t = gate_x * x_t`` forgets everything before.

The scan
--------
``h_t = a_t h_{t-1} + b_t`` looks sequential, but composing two steps is again a
step of the same form: applying ``(a1, b1)`` then ``(a2, b2)`` gives
``(a1 a2, a2 b1 + b2)``. That operator is associative, so all ``h_t`` of a
prompt come out of a *parallel prefix scan* in ``log2(seq)`` rounds
(``keras.ops.associative_scan``, on every backend) instead of ``seq`` dependent
steps. Decoding one token is a single step: ``h = a * h + b``. Everything here
is accumulated in float32, whatever the layer's compute dtype; the state the
cache keeps, ``(batch, lru_width)``, is float32 too.

Names follow DeepMind's ``recurrentgemma/jax/layers.py`` (``RGLRU``, ``BlockDiagonalLinear``).
"""

import keras
from keras import ops

# The RG-LRU's "c" constant: a_t = a ** (c * gate_a), with c = 8 in the paper and the official code.
C = 8.0


@keras.saving.register_keras_serializable(package="gemma_kit")
class BlockDiagonalLinear(keras.layers.Layer):
    """``num_blocks`` independent (width / num_blocks)-square linear maps, with a bias each."""

    def __init__(self, width: int, num_blocks: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.width, self.num_blocks = width, num_blocks
        self.block_width = width // num_blocks
        self.kernel_initializer = kernel_initializer

    def build(self, input_shape=None):
        h, i = self.num_blocks, self.block_width
        self.w = self.add_weight(name="w", shape=(h, i, i), initializer=self.kernel_initializer)
        self.b = self.add_weight(name="b", shape=(h, i), initializer="zeros")

    def call(self, x):                                                # x: (batch, seq, width)
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        blocks = ops.reshape(x, (batch, seq, self.num_blocks, self.block_width))   # (batch, seq, h, i)
        y = ops.einsum("bthi,hij->bthj", blocks, ops.cast(self.w, x.dtype)) + ops.cast(self.b, x.dtype)
        return ops.reshape(y, (batch, seq, self.width))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "num_blocks": self.num_blocks}


def _compose(earlier, later):
    """Two steps ``h -> a1 h + b1`` then ``h -> a2 h + b2`` as one: ``h -> (a1 a2) h + (a2 b1 + b2)``."""
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, a2 * b1 + b2


def linear_scan(a, b, h0=None):
    """All states of ``h_t = a_t h_{t-1} + b_t`` for a whole sequence, in parallel.

    a, b: float32 (batch, seq, width); h0: None (zeros) or (batch, width).
    Returns the states (batch, seq, width) and the last one (batch, width).
    """
    if h0 is not None:          # fold the initial state into the first step: b_0 <- a_0 h0 + b_0
        first = a[:, :1] * h0[:, None] + b[:, :1]
        b = ops.concatenate([first, b[:, 1:]], axis=1)
    _, h = ops.associative_scan(_compose, (a, b), axis=1)
    h = ops.reshape(h, ops.shape(b))          # TensorFlow's scan forgets the static shape
    return h, h[:, -1]


@keras.saving.register_keras_serializable(package="gemma_kit")
class RGLRU(keras.layers.Layer):
    def __init__(self, width: int, num_heads: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.width, self.num_heads = width, num_heads
        gate = dict(kernel_initializer=kernel_initializer, dtype=self.dtype_policy)
        self.input_gate = BlockDiagonalLinear(width, num_heads, name="input_gate", **gate)
        self.a_gate = BlockDiagonalLinear(width, num_heads, name="a_gate", **gate)

    def build(self, input_shape=None):
        # exp(-softplus(a_param)) is the slowest decay a channel can have; the official init
        # spreads it over [0.9, 0.999], i.e. a_param in about [-6.9, -2.2]. Loaders overwrite it.
        self.a_param = self.add_weight(name="a_param", shape=(self.width,),
                                       initializer=keras.initializers.RandomUniform(-6.9, -2.2))
        self.input_gate.build(input_shape)
        self.a_gate.build(input_shape)

    def call(self, x, segment_pos, state=None, return_gates=False):
        """x: (batch, seq, lru_width); segment_pos: (batch, seq) int, 0 at a document start.

        state: None (start from zeros) or the float32 state (batch, lru_width) before ``x``.
        A single token with a state is one recurrence step; anything else is a parallel scan.
        Returns ``(y, last_state)``: y (batch, seq, lru_width) in the compute dtype, and float32 state.
        With ``return_gates`` (for ``gemma_kit.visualize``; off in generation) a third item, a dict of
        float32 (batch, seq, lru_width) tensors: ``input_gate`` (gate_x), ``a_gate`` (gate_a),
        ``decay``, the effective a_t (0 at a document start, where the state resets), and the
        recurrence's ``lru_input`` x_t and states ``lru_state`` h_t.
        """
        x32 = ops.cast(x, "float32")
        gate_x = ops.sigmoid(ops.cast(self.input_gate(x), "float32"))
        gate_a = ops.sigmoid(ops.cast(self.a_gate(x), "float32"))
        log_a = -C * gate_a * ops.softplus(ops.cast(self.a_param, "float32"))   # (batch, seq, lru_width)
        a, a_square = ops.exp(log_a), ops.exp(2.0 * log_a)

        reset = (segment_pos == 0)[:, :, None]                                  # (batch, seq, 1)
        multiplier = ops.where(reset, 1.0, ops.sqrt(1.0 - a_square))
        b = x32 * gate_x * multiplier                                           # the input term b_t
        a = ops.where(reset, 0.0, a)                                            # a reset forgets h_{t-1}

        if state is not None and x.shape[1] == 1:                               # decoding: one step
            last = a[:, 0] * ops.cast(state, "float32") + b[:, 0]               # (batch, lru_width)
            h = last[:, None]                                                   # (batch, 1, lru_width)
        else:                                                                   # a prompt or a chunk: the scan
            h, last = linear_scan(a, b, None if state is None else ops.cast(state, "float32"))
        gates = ({"input_gate": gate_x, "a_gate": gate_a, "decay": a, "lru_input": x32, "lru_state": h},
                 ) if return_gates else ()
        return (ops.cast(h, x.dtype), last) + gates

    def get_config(self):
        return {**super().get_config(), "width": self.width, "num_heads": self.num_heads}
