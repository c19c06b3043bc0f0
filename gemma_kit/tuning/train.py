"""Training with plain Keras ``compile`` / ``fit``: the model, the loss, the optimizer.

    trainer = ResponseLM(model.backbone)                    # logits only where the loss is
    batches = TrainingBatches(data, batch_size=4, steps_per_epoch=25)   # data.py
    compile_for_training(trainer, learning_rate=2e-3)
    trainer.fit(batches, epochs=8, shuffle=False, callbacks=[batches.epoch_callback, ...])

Why a wrapper: Gemma's output layer is the tied embedding, 262,144 words wide;
for Gemma 3 270M it is most of the model's compute (640 x 262,144 = 168M of its
268M weights) and its logits for a batch of 4 x 128 tokens take 0.5 GB in float32.
The loss needs logits only at the response tokens, so ``ResponseLM`` runs the
backbone up to its final norm, picks the hidden states at
``x["target_positions"]`` (data.py) and applies the output layer to those alone.
The backbone itself also trains with ``fit`` (``format_examples`` without
``response_length`` gives its full-length targets); both use the same compile.

The loss is cross-entropy averaged over the response tokens (Keras'
``"mean_with_sample_weight"`` reduction: padding and prompt have weight 0).
The optimizer is AdamW (Loshchilov & Hutter, 2019) without weight decay on norm
scales and biases; ``gradient_accumulation_steps=k`` makes Keras sum the
gradients of k batches before one update: a batch k times larger in the memory of one.
"""

from __future__ import annotations

import keras
from keras import ops

# Variables kept out of weight decay: RMSNorm scales, biases, Griffin's gate biases "b" and decay "a_param".
NO_DECAY = ("scale", "bias", "^b$", "a_param")


class ResponseLM(keras.Model):
    """``backbone`` with logits at ``x["target_positions"]`` (batch, R) only: (batch, R, vocab) float32."""

    def __init__(self, backbone, **kwargs):
        super().__init__(name=kwargs.pop("name", "response_lm"), **kwargs)
        self.backbone = backbone

    def call(self, inputs):
        hidden = self.backbone.hidden_states({"token_ids": inputs["token_ids"],
                                              "padding_mask": inputs["padding_mask"]})    # (batch, seq, hidden)
        positions = ops.cast(inputs["target_positions"], "int32")[:, :, None]              # (batch, R, 1)
        picked = ops.take_along_axis(hidden, positions, axis=1)                              # (batch, R, hidden)
        return self.backbone.logits_from_hidden(picked)                                      # (batch, R, vocab)


def compile_for_training(model, learning_rate: float = 1e-3, weight_decay: float = 0.01,
                         gradient_accumulation_steps: int | None = None, **compile_kwargs):
    """``model.compile`` with AdamW (no decay on norm scales and biases) and the response-only loss.

    ``model``: a ``ResponseLM`` or a backbone. Extra keyword arguments go to ``compile``
    (e.g. ``jit_compile=False``). Returns ``model``. Call it *after* ``enable_lora``: Keras
    builds the optimizer for the variables that are trainable when it first runs.
    """
    if gradient_accumulation_steps is not None and gradient_accumulation_steps < 2:
        gradient_accumulation_steps = None                 # Keras wants None, or at least 2
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay,
                                       gradient_accumulation_steps=gradient_accumulation_steps)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")
    model.compile(optimizer=optimizer, loss=loss,
                  weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], **compile_kwargs)
    return model
