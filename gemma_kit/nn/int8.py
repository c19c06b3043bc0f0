"""Weight-only int8: int8 weights with one float32 scale per block of 32 inputs, float32 activations.

Decoding one token reads every weight once, so on a CPU its speed is set by memory
bandwidth: weights kept in int8 are read at about a quarter of float32's bytes. Each
output channel ``o`` (a row of ``W`` in ``y = W x``) is cut into blocks of ``BLOCK`` = 32
inputs, and each block keeps its own scale, as llama.cpp's Q8_0 does::

    scale[o, b] = max_{i in b} |W[o, i]| / 127           # one float32 per 32 weights (+12.5% bytes)
    q[o, i]     = round(W[o, i] / scale[o, b])            # int8, in [-127, 127]
    y[o]        = sum_i q[o, i] * scale[o, b(i)] * x[i]   # dequantized inside the product

A GGUF file's Q8_0 tensors are therefore taken as they are (same blocks, same values), and
other tensors lose less than with one scale per row (a row of 640 mixes large and small weights).

Keras already has int8 layers (``layer.quantize("int8")``): we keep its machinery (the
``int8_from_float32`` dtype policy, the ``kernel``/``kernel_scale`` variables, LoRA on top,
``enable_lora`` and ``.keras`` saving) and deliberately change four things, each measured
on a 2-core CPU with JAX:

1. **Layout.** Keras stores a Dense kernel ``(in, out)``. XLA fuses the int8 -> float32 cast
   into a matrix-vector product only when the summed axis is the contiguous one, so we store
   it ``(out, in)``: Gemma 3 270M's 126 projections take 21 ms in float32, 213 ms as Keras'
   int8 ``(in, out)``, 5.8 ms as int8 ``(out, in)``.
2. **A few rows at a time.** With more than one row (a batch, or the k+1 tokens a
   speculative step verifies) XLA no longer fuses the cast into the product: the
   262,144 x 640 output layer takes 400 ms for 5 rows as one product, 45 ms as five
   matrix-vector products (float32: 74 ms). Up to ``ROWS_UNROLLED`` rows go one by one.
3. **Weights only.** Keras' default int8 also rounds each layer's *input* to int8 (1,000 ms
   for the output layer here, and no gradient for LoRA through the tied output layer).
4. **Block scales** instead of one per output channel (above); the block multiply is fused
   too (14.1 ms for the output layer with block scales, 14.1 ms with row scales).

Loaders assign float arrays to an int8 model through ``Int8Weight``: it looks like the float
weight (its float shape) and quantizes what it is given, so a checkpoint is read tensor by
tensor into int8 without ever holding the whole float32 model.
"""

import contextlib
import gc

import keras
import numpy as np
from keras import ops

BLOCK = 32                  # inputs sharing one scale (llama.cpp's Q8_0 block)
ROWS_UNROLLED = 16          # up to this many rows: one matrix-vector product per row (JAX on a CPU) ...
ROWS_UNROLLED_SMALL = 8     # ... or this many for a matrix under BIG_MATRIX weights, where one product of
BIG_MATRIX = 1 << 22        # 9-16 rows is as fast (a 2048 x 640 kernel, 16 rows: 1.59 ms, row by row 1.53 ms)
                            # and unrolling only costs compile time (a 16-token prefill: 2,000 products)
WEIGHT_ONLY_INT8 = keras.quantizers.Int8QuantizationConfig(activation_quantizer=None)


def block_size(width: int) -> int:
    """32, or the whole row when the row is not a multiple of 32 (tiny test models)."""
    return BLOCK if width % BLOCK == 0 else width


def quantize_blocks(weight, chunk_rows: int = 16384):
    """float (out, in) -> (int8 (out, in), float32 scale (out, in / block)); an all-zero block gets scale 1.

    Works ``chunk_rows`` rows at a time, so the temporaries stay small next to the weight.
    """
    weight = np.asarray(weight)
    out, width = weight.shape
    size = block_size(width)
    q = np.empty(weight.shape, np.int8)
    scale = np.empty((out, width // size), np.float32)
    for first in range(0, out, chunk_rows):
        rows = weight[first:first + chunk_rows].astype(np.float32, copy=False)
        blocks = rows.reshape(len(rows), -1, size)                                     # (chunk, blocks, size)
        absmax = np.abs(blocks).max(axis=2)                                            # (chunk, blocks)
        s = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)
        q[first:first + chunk_rows] = np.clip(np.rint(blocks / s[:, :, None]), -127, 127).reshape(rows.shape)
        scale[first:first + chunk_rows] = s
    return q, scale


def dequantize(q, scale, dtype="float32"):
    """int8 rows (..., in) and their block scales (..., in / block) -> float rows (..., in)."""
    width, blocks = q.shape[-1], scale.shape[-1]
    shape = ops.shape(q)
    w = ops.reshape(ops.cast(q, dtype), (*shape[:-1], blocks, width // blocks))       # (..., blocks, size)
    return ops.reshape(w * ops.cast(scale, dtype)[..., None], shape)


def int8_matmul(x, q, scale):
    """x: (..., in) float; q: (out, in) int8; scale: (out, in / block). Returns (..., out) = x @ W.T."""
    width, out = q.shape[1], q.shape[0]
    rows = ops.reshape(x, (-1, width))                                              # (n, in)
    w = ops.transpose(dequantize(q, scale, x.dtype))                                # (in, out), fused into the product
    n = rows.shape[0]
    limit = ROWS_UNROLLED if out * width >= BIG_MATRIX else ROWS_UNROLLED_SMALL
    if keras.config.backend() == "jax" and n is not None and n <= limit:
        y = ops.concatenate([ops.matmul(rows[i:i + 1], w) for i in range(n)], axis=0)   # n products of one row
    else:
        y = ops.matmul(rows, w)                                                     # (n, out)
    return ops.reshape(y, (*ops.shape(x)[:-1], out))


class Int8Weight:
    """An int8 weight as a loader sees it: its float shape, and ``assign(float_array)`` quantizes.

    ``transposed``: the float weight is the transpose of the stored ``(out, in)`` one (a Dense
    kernel is ``(in, out)`` as float). ``numpy()`` gives the dequantized float weight (exports).
    """

    dtype = "float32"

    def __init__(self, q, scale, transposed: bool):
        self.q, self.scale, self.transposed = q, scale, transposed
        self.stored_shape = tuple(q.shape)                                          # (out, in)
        self.shape = self.stored_shape[::-1] if transposed else self.stored_shape
        self.path = q.path

    def assign(self, value):
        value = np.asarray(ops.convert_to_numpy(value))
        if tuple(value.shape) != self.shape:
            raise ValueError(f"{self.path}: got a tensor of shape {tuple(value.shape)}, expected {self.shape}")
        self.assign_stored([(0, value.T if self.transposed else value)])

    def assign_stored(self, chunks):
        """Fill the weight in its stored ``(out, in)`` layout from ``(first_row, rows)`` pieces, where
        ``rows`` is a float array, or an already quantized ``(int8 rows, block scales)`` pair (a GGUF
        Q8_0 tensor). A large table is read piece by piece and never exists whole in float32."""
        q = np.empty(self.stored_shape, np.int8)
        scale = np.empty(tuple(self.scale.shape), np.float32)
        for first, rows in chunks:
            rows_q, rows_scale = rows if isinstance(rows, tuple) else quantize_blocks(rows)
            if rows_scale.shape[1:] != scale.shape[1:]:
                raise ValueError(f"{self.path}: blocks of {rows_q.shape[1] // rows_scale.shape[1]} values given, "
                                 f"the layer keeps blocks of {q.shape[1] // scale.shape[1]}")
            q[first:first + len(rows_q)], scale[first:first + len(rows_q)] = rows_q, rows_scale
        self.q.assign(q)
        del q                                           # (the variable holds its own copy)
        self.scale.assign(scale)

    def numpy(self):
        value = np.asarray(ops.convert_to_numpy(dequantize(self.q, self.scale)), np.float32)
        return value.T if self.transposed else value

    def __array__(self, dtype=None, copy=None):
        return self.numpy() if dtype is None else self.numpy().astype(dtype)

    @property
    def value(self):
        return ops.convert_to_tensor(self.numpy())


def float_view(weights: dict) -> dict:
    """``weights_by_path`` with every int8 weight and its scale replaced by one ``Int8Weight``
    under the float weight's path (``block_0/attention.query.kernel``, ``token_embedding.embeddings``)."""
    out = {}
    for path, variable in weights.items():
        if path.endswith("_scale") and path[:-len("_scale")] in weights:
            continue                                                   # folded into its Int8Weight
        scale = weights.get(path + "_scale")
        if scale is not None and keras.backend.standardize_dtype(variable.dtype) == "int8":
            variable = Int8Weight(variable, scale, transposed=path.endswith(".kernel"))
        out[path] = variable
    return out


_building_int8 = False


@contextlib.contextmanager
def built_in_int8():
    """Inside this block, new ``Dense``/``ReversibleEmbedding``/``Embedding`` layers are created int8:
    their float weights are never allocated (``gemma_kit.load(..., quantize="int8")``)."""
    global _building_int8
    previous, _building_int8 = _building_int8, True
    try:
        yield
    finally:
        _building_int8 = previous


def _int8_policy(kwargs):
    """The layer's dtype argument, turned int8 inside ``built_in_int8`` (weights-only: compute stays float)."""
    if _building_int8:
        policy = keras.dtype_policies.get(kwargs.get("dtype") or keras.config.dtype_policy())
        if policy.quantization_mode is None:
            kwargs["dtype"] = keras.dtype_policies.get(f"int8_from_{policy.name}")
    return kwargs


def _quantize_in_place(layer, name: str, transposed: bool):
    """Replace ``layer``'s float weight ``name`` ("_kernel"/"_embeddings") by int8 + scale."""
    value = np.asarray(ops.convert_to_numpy(getattr(layer, name)))
    delattr(layer, name)
    layer.quantized_build(value.shape, "int8", WEIGHT_ONLY_INT8)
    scale = layer.kernel_scale if transposed else layer.embeddings_scale
    Int8Weight(getattr(layer, name), scale, transposed).assign(value)
    layer.quantization_config = WEIGHT_ONLY_INT8
    layer.dtype_policy = keras.dtype_policies.get(f"int8_from_{layer.dtype_policy.name}")


@keras.saving.register_keras_serializable("gemma_kit")
class Dense(keras.layers.Dense):
    """``keras.layers.Dense`` whose int8 form is weight-only, ``(out, in)``, with block scales (see above)."""

    def __init__(self, units, **kwargs):
        super().__init__(units, **_int8_policy(kwargs))

    def _int8_build(self, kernel_shape, config=None):
        fan_in = kernel_shape[0]
        self.inputs_quantizer = None
        self._kernel = self.add_weight(name="kernel", shape=(self.units, fan_in),              # (out, in)
                                       initializer="zeros", dtype="int8", trainable=False)
        self.kernel_scale = self.add_weight(name="kernel_scale", shape=(self.units, fan_in // block_size(fan_in)),
                                            initializer="ones", trainable=False)           # (out, in / block)

    def _int8_call(self, inputs, training=None):
        x = int8_matmul(inputs, self._kernel, self.kernel_scale)                     # (..., units)
        if self.lora_enabled:
            lora = ops.matmul(ops.matmul(inputs, self.lora_kernel_a), self.lora_kernel_b)
            x = x + (self.lora_alpha / self.lora_rank) * lora
        if self.bias is not None:
            x = x + self.bias
        return x if self.activation is None else self.activation(x)

    def quantize(self, mode=None, type_check=True, config=None):
        if mode != "int8":
            return super().quantize(mode, type_check=False, config=config)
        _quantize_in_place(self, "_kernel", transposed=True)

    @property
    def kernel(self):
        """The float ``(in, out)`` kernel, dequantized when int8 (what ``enable_lora`` sizes LoRA by)."""
        if self.quantization_mode != "int8":
            return super().kernel
        return ops.transpose(dequantize(self._kernel, self.kernel_scale, self.compute_dtype))   # (in, out)

    def _get_kernel_with_merged_lora(self):
        """For ``.keras`` saving: the stored int8 kernel, LoRA folded in and requantized when enabled."""
        if self.quantization_mode != "int8":
            return super()._get_kernel_with_merged_lora()
        if not self.lora_enabled:
            return self._kernel, self.kernel_scale, None
        weight = Int8Weight(self._kernel, self.kernel_scale, transposed=True).numpy()        # (in, out)
        lora = ops.convert_to_numpy(ops.matmul(self.lora_kernel_a, self.lora_kernel_b))
        q, scale = quantize_blocks((weight + (self.lora_alpha / self.lora_rank) * lora).T)
        return q, scale, None


class Int8Table:
    """What both embedding layers share in int8: the table ``(vocab, width)`` with block scales,
    and a lookup that dequantizes only the rows it takes."""

    def _int8_build(self, embeddings_shape=None, config=None):
        vocab, width = embeddings_shape or (self.input_dim, self.output_dim)
        self.inputs_quantizer = None
        self._embeddings = self.add_weight(name="embeddings", shape=(vocab, width), initializer="zeros",
                                           dtype="int8", trainable=False)
        self.embeddings_scale = self.add_weight(name="embeddings_scale", shape=(vocab, width // block_size(width)),
                                                initializer="ones", trainable=False)

    def _int8_lookup(self, token_ids):
        token_ids = ops.cast(token_ids, "int32")
        rows = dequantize(ops.take(self._embeddings, token_ids, axis=0),                 # (..., width)
                          ops.take(self.embeddings_scale, token_ids, axis=0), self.compute_dtype)
        if self.lora_enabled:
            lora = ops.matmul(ops.take(self.lora_embeddings_a, token_ids, axis=0), self.lora_embeddings_b)
            rows = rows + (self.lora_alpha / self.lora_rank) * lora
        return rows

    def quantize(self, mode=None, type_check=True, config=None):
        if mode != "int8":
            return super().quantize(mode, type_check=False, config=config)
        _quantize_in_place(self, "_embeddings", transposed=False)


@keras.saving.register_keras_serializable("gemma_kit")
class ReversibleEmbedding(Int8Table, keras.layers.ReversibleEmbedding):
    """``keras.layers.ReversibleEmbedding`` with tied weights whose int8 output layer is weight-only
    and runs row by row (see above). The int8 table ``(vocab, width)`` is already ``(out, in)``
    for the output layer ``logits = x @ table.T``."""

    def __init__(self, input_dim, output_dim, **kwargs):
        super().__init__(input_dim, output_dim, **_int8_policy(kwargs))

    def _int8_call(self, inputs, reverse=False):
        if not reverse:
            return self._int8_lookup(inputs)
        inputs = ops.cast(inputs, self.reverse_dtype or self.compute_dtype)
        logits = int8_matmul(inputs, self._embeddings, self.embeddings_scale)         # (..., vocab)
        if self.logit_soft_cap is not None:
            logits = self.logit_soft_cap * ops.tanh(logits / self.logit_soft_cap)
        return logits


@keras.saving.register_keras_serializable("gemma_kit")
class Embedding(Int8Table, keras.layers.Embedding):
    """``keras.layers.Embedding`` (a lookup table, e.g. Gemma 4's per-layer table) that
    ``built_in_int8`` creates int8 and ``quantize_backbone`` quantizes tensor by tensor."""

    def __init__(self, input_dim, output_dim, **kwargs):
        super().__init__(input_dim, output_dim, **_int8_policy(kwargs))

    def _int8_call(self, inputs, training=None):
        return self._int8_lookup(inputs)


def quantize_backbone(backbone) -> int:
    """Quantize every ``Dense``, ``ReversibleEmbedding`` and ``Embedding`` of ``backbone`` to int8, one
    weight at a time; returns how many. Other weights (norms, Griffin's gates and convolution,
    Gemma 4's expert tensors) stay float. Call ``GemmaModel.recompile()`` afterwards."""
    count = 0
    with one_garbage_collection():
        for layer in backbone._flatten_layers(include_self=False):     # Keras' walk over nested layers
            if isinstance(layer, keras.layers.Dense) and not isinstance(layer, Dense):
                raise TypeError(f"{layer.path}: a keras.layers.Dense; gemma_kit's int8 needs gemma_kit.nn.int8.Dense")
            if isinstance(layer, (Dense, ReversibleEmbedding, Embedding)) and not layer.quantization_mode:
                layer.quantize("int8")
                count += 1
    return count


@contextlib.contextmanager
def one_garbage_collection():
    """Keras runs ``gc.collect()`` each time a layer drops its float kernel (``Layer.__delattr__``):
    about a second per layer in a big Python heap, minutes for a whole model. Collect once at the end."""
    collect = gc.collect
    gc.collect = lambda *args, **kwargs: 0
    try:
        yield
    finally:
        gc.collect = collect
        gc.collect()
