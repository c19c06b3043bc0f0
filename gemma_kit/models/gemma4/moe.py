"""Gemma 4's mixture-of-experts block (26B-A4B): a router picks ``k`` of ``E`` small GeGLU experts per token.

    r      = rms_norm(x) * scale * hidden ** -0.5          # (batch, seq, hidden), a norm without weight
    p      = softmax(r @ W_router)                         # (batch, seq, experts), float32
    w, e   = top_k(p, k)                                   # the k best experts and their probabilities
    w      = w / sum(w) * per_expert_scale[e]              # renormalised to 1, then a learned scale each
    out    = sum_j w_j * expert_{e_j}(x_experts)           # each expert: down(gelu_tanh(gate(x)) * up(x))

It does not replace the dense MLP: the block adds the two (``block.py``). The
router reads the residual stream ``x``; the experts read their own normed copy
``x_experts``. 26B-A4B has 128 experts and picks 8, so about 4B of its 26B
parameters are *active* for a token (``Gemma4Config.active_parameters``).

We compute every expert and weight the unchosen ones by 0: one ``einsum``, exact,
and what a CPU lesson on a tiny model needs. It reads all ``E`` experts' weights,
so it is no faster than a dense model; serving systems instead send each token to
its ``k`` experts only ("dispatch"), which is what makes 26B-A4B as fast as a 4B.
Expert weights are stored expert-first, ``gate``/``up`` (experts, hidden, expert_dim)
and ``down`` (experts, expert_dim, hidden), so ``keras.distribution`` can put
whole experts on different devices (expert parallelism).

LoRA (``gemma_kit.tuning``) reaches the experts through ``enable_lora`` below:
each expert gets its own low-rank pair, ``W_e + (alpha / rank) * A_e @ B_e``.

The router reads the residual stream ``x``, float32 under a float16 policy
(``nn/precision.py``): the layer takes it uncast; its norm makes it small.
"""

import keras
from keras import ops

from ...nn.int8 import Dense
from ...nn.precision import autocast_inputs
from ...nn.rms_norm import RMSNorm

EXPERT_WEIGHTS = ("gate", "up", "down")         # the three stacked expert matrices LoRA adapts


@keras.saving.register_keras_serializable(package="gemma_kit")
class MixtureOfExperts(keras.layers.Layer):
    def __init__(self, hidden_dim: int, num_experts: int, experts_per_token: int, expert_dim: int,
                 rms_norm_eps: float = 1e-6, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(autocast=autocast_inputs(kwargs.get("dtype")), **kwargs)     # x: the residual stream
        self.hidden_dim, self.num_experts = hidden_dim, num_experts
        self.experts_per_token, self.expert_dim = experts_per_token, expert_dim
        self.rms_norm_eps, self.kernel_initializer = rms_norm_eps, kernel_initializer
        self.router_norm = RMSNorm(rms_norm_eps, use_scale=False, name="router_norm", dtype=self.dtype_policy)
        self.router = Dense(num_experts, use_bias=False, kernel_initializer=kernel_initializer,
                                         name="router", dtype=self.dtype_policy)
        self.lora_enabled, self.lora_rank, self.lora_alpha = False, None, None

    def build(self, input_shape):                                     # (batch, seq, hidden)
        h, e, f, init = self.hidden_dim, self.num_experts, self.expert_dim, self.kernel_initializer
        self.router_norm.build(input_shape)
        self.router.build(input_shape)
        self.router_scale = self.add_weight(name="router_scale", shape=(h,), initializer="ones")
        self.per_expert_scale = self.add_weight(name="per_expert_scale", shape=(e,), initializer="ones")
        self.gate = self.add_weight(name="gate", shape=(e, h, f), initializer=init)
        self.up = self.add_weight(name="up", shape=(e, h, f), initializer=init)
        self.down = self.add_weight(name="down", shape=(e, f, h), initializer=init)

    def route(self, x):
        """(batch, seq, experts) float32: each expert's weight for each token, zero for the unchosen."""
        routed = self.router_norm(x) * ops.cast(self.router_scale, x.dtype) * ops.cast(self.hidden_dim ** -0.5,
                                                                                           x.dtype)
        probs = ops.softmax(ops.cast(self.router(routed), "float32"), axis=-1)   # (batch, seq, experts)
        top_weights, top_experts = ops.top_k(probs, self.experts_per_token)    # (batch, seq, k) each
        top_weights = top_weights / ops.sum(top_weights, axis=-1, keepdims=True)
        top_weights = top_weights * ops.take(ops.cast(self.per_expert_scale, "float32"), top_experts)
        chosen = ops.one_hot(top_experts, self.num_experts)                   # (batch, seq, k, experts)
        return ops.sum(chosen * top_weights[..., None], axis=2)               # (batch, seq, experts)

    def call(self, x, x_experts):
        """x: the residual stream (the router's input); x_experts: the experts' input. Both (batch, seq, hidden).

        Returns the weighted sum of the experts (batch, seq, hidden) and the routing weights
        (batch, seq, experts) (``gemma_kit.visualize`` shows which expert each token went to).
        """
        weights = self.route(x)                                               # (batch, seq, experts)
        x_experts = ops.cast(x_experts, self.compute_dtype)
        gate = ops.einsum("bsh,ehf->bsef", x_experts, ops.cast(self.expert_weight("gate"), x_experts.dtype))
        up = ops.einsum("bsh,ehf->bsef", x_experts, ops.cast(self.expert_weight("up"), x_experts.dtype))
        hidden = ops.gelu(gate, approximate=True) * up                        # (batch, seq, experts, expert_dim)
        hidden = hidden * ops.cast(weights, hidden.dtype)[..., None]          # unchosen experts count 0
        return ops.einsum("bsef,efh->bsh", hidden, ops.cast(self.expert_weight("down"), hidden.dtype)), weights

    # -- LoRA on the experts ---------------------------------------------------------------------
    # Keras' own ``Dense.enable_lora`` adapts the single 2-D kernel (in, out) of a Dense layer. The
    # experts are not Dense layers but three raw 3-D weights, E matrices stacked along the first
    # axis, so it does not apply. The update below is the one LoRA would give E separate Dense
    # layers: per expert e, W_e' = W_e + (alpha / rank) * A_e @ B_e, A_e (in, rank), B_e (rank, out).
    def enable_lora(self, rank: int, lora_alpha=None):
        """Freeze ``gate``/``up``/``down`` and add ``{name}_lora_kernel_a`` (experts, in, rank), B = 0."""
        if not self.built:
            raise ValueError("Cannot enable LoRA on a MixtureOfExperts layer that is not built yet")
        if self.lora_enabled:
            raise ValueError(f"LoRA is already enabled on {self.path}")
        self._tracker.unlock()                         # Keras locks a layer's variables after build
        for name in EXPERT_WEIGHTS:
            experts, fan_in, fan_out = getattr(self, name).shape
            limit = (6.0 / fan_in) ** 0.5              # He uniform with each expert's own fan-in, as Dense's A
            a = self.add_weight(name=f"{name}_lora_kernel_a", shape=(experts, fan_in, rank), dtype="float32",
                                initializer=keras.initializers.RandomUniform(-limit, limit))
            b = self.add_weight(name=f"{name}_lora_kernel_b", shape=(experts, rank, fan_out), dtype="float32",
                                initializer="zeros")   # B = 0: the adapted model starts as the base
            setattr(self, f"{name}_lora_kernel_a", a)
            setattr(self, f"{name}_lora_kernel_b", b)
            getattr(self, name).trainable = False
        self._tracker.lock()
        self.lora_enabled, self.lora_rank = True, rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else rank

    def expert_weight(self, name: str):
        """``gate``, ``up`` or ``down`` as the forward pass uses it: with its LoRA update when enabled."""
        weight = getattr(self, name)                                          # (experts, in, out)
        if not self.lora_enabled:
            return weight
        a, b = getattr(self, f"{name}_lora_kernel_a"), getattr(self, f"{name}_lora_kernel_b")
        update = ops.matmul(a, b) * (self.lora_alpha / self.lora_rank)        # (experts, in, out), one A_e @ B_e each
        return ops.cast(weight, update.dtype) + update

    def save_own_variables(self, store):
        """As Keras' Dense does under LoRA: save the merged experts, so the file loads into a model without LoRA."""
        for i, name in enumerate(("router_scale", "per_expert_scale") + EXPERT_WEIGHTS):
            value = self.expert_weight(name) if name in EXPERT_WEIGHTS else getattr(self, name)
            store[str(i)] = ops.convert_to_numpy(ops.cast(value, getattr(self, name).dtype))

    def load_own_variables(self, store):
        """The five saved weights; LoRA matrices, if enabled, restart at zero (what Keras' Dense does)."""
        for i, name in enumerate(("router_scale", "per_expert_scale") + EXPERT_WEIGHTS):
            getattr(self, name).assign(store[str(i)])
            if self.lora_enabled and name in EXPERT_WEIGHTS:
                for side in "ab":
                    variable = getattr(self, f"{name}_lora_kernel_{side}")
                    variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "num_experts": self.num_experts,
                "experts_per_token": self.experts_per_token, "expert_dim": self.expert_dim,
                "rms_norm_eps": self.rms_norm_eps}
