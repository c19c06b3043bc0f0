"""Train the two small models the kit ships: a Griffin and a same-size Gemma, on the standard library's code.

    python data/make_small_models.py     # about 3 minutes on an idle 2-core CPU; writes, in data/:
        stdlib_small_tokenizer.model                          # SentencePiece BPE, 2,048 pieces
        stdlib_small_griffin.json + .safetensors              # config + int8 weights (one scale per row)
        stdlib_small_gemma.json + .safetensors

It runs lesson 7's recipe at the lesson's default parameters (``gemma_kit.pretrain.RECIPE``) with the
same functions, so the lesson reproduces these models: the corpus is this Python's standard library
(``stdlib_corpus``), the tokenizer is trained on it (``train_tokenizer``), both models see the same
packed rows in the same order with the same optimizer and seed (``train_model``). Each ``.json`` also
records the recipe, the Python version whose sources were read and the loss history.
"""

import os
import platform
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

from gemma_kit import pretrain  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    r = pretrain.RECIPE
    corpus = pretrain.stdlib_corpus(r["max_bytes"])
    tokenizer = pretrain.train_tokenizer(corpus["train"], r["vocab_size"])
    train = pretrain.pack(corpus["train"], tokenizer, r["seq_len"])
    held_out = pretrain.pack(corpus["held_out"], tokenizer, r["seq_len"])
    held_out = {k: v[: r["held_out_rows"]] for k, v in held_out.items()}          # the rows scored while training
    tokenizer.save(os.path.join(HERE, pretrain.SHIPPED_TOKENIZER))
    configs = dict(zip(("griffin", "gemma"), pretrain.same_size_pair(tokenizer.vocab_size, r["width"], r["blocks"],
                                                                      r["window"])))
    for family, config in configs.items():
        keras.utils.set_random_seed(r["seed"])
        backbone = pretrain.FAMILIES[family][1](config)
        start = time.perf_counter()
        history = pretrain.train_model(backbone, train, held_out, steps=r["steps"], batch_size=r["batch_size"],
                                       learning_rate=r["learning_rate"], warmup=r["warmup"],
                                       evaluate_every=r["evaluate_every"], seed=r["seed"], verbose=2)
        seconds = time.perf_counter() - start
        written = pretrain.save_model(os.path.join(HERE, pretrain.SHIPPED[family]), backbone, "int8", recipe=r,
                                      history=history, parameters=backbone.count_params(),
                                      train_seconds=round(seconds, 1), python=platform.python_version(),
                                      keras_backend=keras.backend.backend())
        print(f"{family}: {backbone.count_params():,} parameters, {seconds:.0f} s, held-out loss "
              f"{history['held_out_loss'][-1]:.3f}; wrote", ", ".join(p.name for p in written), file=sys.stderr)


if __name__ == "__main__":
    main()
