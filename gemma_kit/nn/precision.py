"""float16 and the residual stream: the one tensor a float16 model keeps in float32.

A free Colab GPU is a T4, which has float16 tensor cores but none for bfloat16,
so learners load ``dtype="float16"``. float16 has bfloat16's 16 bits but spends
more of them on precision and fewer on range: its largest value is 65,504
(bfloat16's, like float32's, is about 3e38). Gemma's residual stream goes past it.

Measured on the real Gemma 3 270M (float32, BOS + "The capital of France is"), the
largest ``|x|`` of each part of the computation:

| tensor                                   | max abs                 | in float16                  |
|------------------------------------------|-------------------------|-----------------------------|
| residual stream after block 0 / 6 / 7    | 2,984 / 54,685 / 68,398 | overflows from block 7      |
| residual stream, peak (block 14)         | 103,795                 | overflows                   |
| RMSNorm sum of squares (pre-norms)       | 1.08e10                 | overflows (already float32) |
| post-norm outputs (the residual updates) | 19,870                  | fits, 3x margin             |
| attention logits; q / k / v              | 37; 3.4 / 76 / 95       | fits                        |
| MLP gate x up product; MLP output        | 139; 43                 | fits                        |
| embedding x sqrt(640); output logits     | 23; 32                  | fits                        |

The huge values are one channel (163) of the BOS token, a "massive activation"
(Sun et al., 2024): the other tokens peak at 36,767. In float16 that channel
becomes ``inf`` at block 7, the next norm turns it into NaN, and the NaN reaches
every token through attention: every logit of every position is NaN.

The fix, as vLLM's (PR #17364: "residual should be float if orig_dtype is float16")
and Mamba's ``residual_in_fp32``: **under a float16 policy the residual stream is
float32**. Everything that reads or writes it is a cheap elementwise op (the
additions, the norms, which compute in float32 anyway); the big matmuls (the
attention projections and the MLP) still run in float16 on their normed inputs,
and the weights and the KV cache stay float16 (the tied output layer computes its
logits in float32 in every dtype). The 270M then gives float32's greedy tokens,
its logits within 0.06 of float32's (``tests/test_float16.py``). transformers' proposed fix
(PR #36832, issue #39972) clamps the residual additions and norm outputs to
+-65,504 instead: it keeps everything float16 but changes the BOS token's massive
activation (103,795 becomes 65,504), which every later token attends to.

float32 and bfloat16 policies are untouched: their residual stream is their compute dtype.
float16 is for GPUs: a CPU has no float16 arithmetic, so there it is slower than
float32 (measured on 2 cores, JAX: the 270M decodes 4.2 tokens/s against 11.7).

Two Keras details make it work. A layer casts its floating inputs to its compute
dtype (Keras' ``autocast``), which would undo the float32 stream: the layers the
stream flows into (the blocks, RMSNorm, Gemma 4's experts) turn it off under
float16 (``autocast_inputs``). And a layer that reads the stream with no norm in
between (Gemma 4's per-layer-input gate) computes in float32 (``residual_policy``).
"""

import keras

FLOAT16_MAX = 65504.0       # the largest finite float16


def _policy(dtype):
    return keras.dtype_policies.get(dtype or keras.config.dtype_policy())


def residual_dtype(dtype=None) -> str:
    """The residual stream's dtype under the policy ``dtype``: float32 when it computes in float16
    (``"float16"``, ``"mixed_float16"``, ``"int8_from_float16"``), its compute dtype otherwise."""
    compute = _policy(dtype).compute_dtype
    return "float32" if compute == "float16" else compute


def residual_policy(dtype=None):
    """The policy of a layer that reads the raw residual stream: ``"float32"`` under float16, else ``dtype``."""
    return "float32" if residual_dtype(dtype) != _policy(dtype).compute_dtype else dtype


def autocast_inputs(dtype=None) -> bool:
    """Keras' ``autocast`` for a layer the residual stream flows into: off when the stream is float32
    and the layer computes in float16 (Keras would cast the stream down, and overflow), else Keras' default."""
    return residual_dtype(dtype) == _policy(dtype).compute_dtype
