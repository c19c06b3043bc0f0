"""Rotary position embeddings (RoPE, Su et al. 2021), "rotate-half" layout.

Each pair of channels ``(i, i + head_dim/2)`` of a query or key is rotated by
the angle ``position * base ** (-2i / head_dim)``. The dot product of a rotated
query and key then depends only on their *distance*, which is how attention
learns relative positions. Gemma 3 uses base 10,000 on sliding-window layers
and 1,000,000 on global layers (slower rotation reaches further back).
"""

from keras import ops


def apply_rope(x, positions, base: float = 10_000.0, scaling_factor: float = 1.0,
               rotary_dim=None, rotated_fraction: float = 1.0):
    """Rotate ``x`` (batch, seq, heads, head_dim) by integer ``positions`` (batch, seq).

    Two ways to rotate only part of a head:

    - ``rotary_dim`` rotates only the first channels as if they were a smaller head
      (RecurrentGemma rotates the first half);
    - ``rotated_fraction`` (Gemma 4's "proportional" RoPE on global layers, 0.25) keeps the
      whole head's frequencies ``base ** (-2i / head_dim)`` but only the fastest
      ``fraction * head_dim / 2`` pairs turn; the slow rest get frequency 0 (left as they are).
    """
    head_dim = x.shape[-1]
    rotary_dim = rotary_dim or head_dim
    half = rotary_dim // 2
    exponents = ops.arange(0, rotary_dim, 2, dtype="float32") / rotary_dim
    inverse_freq = 1.0 / ops.power(base, exponents) / scaling_factor    # (half,)
    if rotated_fraction < 1.0:                                          # pairs past this one stand still
        turning = int(rotated_fraction * head_dim // 2)
        inverse_freq = ops.where(ops.arange(half) < turning, inverse_freq, 0.0)
    angles = ops.cast(positions, "float32")[..., None] * inverse_freq    # (batch, seq, half)
    angles = ops.concatenate([angles, angles], axis=-1)[:, :, None, :]   # (batch, seq, 1, rotary_dim)
    cos, sin = ops.cos(angles), ops.sin(angles)

    x32 = ops.cast(x, "float32")
    rotated, passed = x32[..., :rotary_dim], x32[..., rotary_dim:]
    first, second = rotated[..., :half], rotated[..., half:]
    rotate_half = ops.concatenate([-second, first], axis=-1)             # (batch, seq, heads, rotary_dim)
    out = rotated * cos + rotate_half * sin
    if rotary_dim < head_dim:
        out = ops.concatenate([out, passed], axis=-1)
    return ops.cast(out, x.dtype)
