"""Compile a function of a Keras model once, the right way for each backend.

- JAX: ``jax.jit`` needs a *pure* function, so the model's weights become an
  argument and ``keras.StatelessScope`` maps each variable to the value passed
  in (the same technique keras-hub's ``CausalLM`` uses). Buffers named in
  ``donate`` (the KV cache) are updated in place instead of copied. Compiled
  programs are also kept on disk (JAX's persistent compilation cache, in
  ``~/.cache/gemma_kit/jax`` unless you configured one): the second time a
  notebook or the CLI runs, the first answer comes without compiling.
- TensorFlow: ``tf.function`` traces the function into a graph (once per shape;
  the generation loop rounds shapes to a few buckets).
- PyTorch: eager execution under ``torch.no_grad()`` (no autograd bookkeeping).
"""

import os

import keras


def enable_jax_compilation_cache():
    """Keep compiled XLA programs on disk, unless the user chose otherwise.

    Set ``GEMMA_KIT_JAX_CACHE=0`` to turn this off, or to a folder to put it elsewhere.
    """
    import jax

    choice = os.environ.get("GEMMA_KIT_JAX_CACHE", "")
    if choice == "0" or jax.config.jax_compilation_cache_dir:
        return
    folder = choice or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                    "gemma_kit", "jax")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)   # only programs worth keeping


def compile_model_function(model, fn, static_argnames=(), donate_argnums=()):
    """``fn(*args)`` compiled for the current backend; ``model``'s variables are its weights."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax
        enable_jax_compilation_cache()

        def pure(variable_values, *args, **kwargs):
            with keras.StatelessScope(state_mapping=list(zip(model.variables, variable_values))):
                return fn(*args, **kwargs)

        jitted = jax.jit(pure, static_argnames=static_argnames,
                         donate_argnums=tuple(i + 1 for i in donate_argnums))

        def call(*args, **kwargs):
            return jitted([v.value for v in model.variables], *args, **kwargs)
        return call
    if backend == "tensorflow":
        import tensorflow as tf
        # Static shapes per trace: the attention layer decides "prompt or one step?"
        # from the sequence length, so no reduce_retracing (which would make it unknown).
        return tf.function(fn)
    if backend == "torch":
        import torch

        def call(*args, **kwargs):
            with torch.no_grad():
                return fn(*args, **kwargs)
        return call
    raise RuntimeError(f"gemma_kit supports the jax, tensorflow and torch backends, not {backend!r}")
