"""Measuring what tuning changed: held-out loss, exact match of generated answers, the loss curve.

    loss = held_out_loss(trainer, test_data)                 # mean cross-entropy per response token
    score, answers = exact_match(model, test_examples)        # greedy answers, gemma_kit.evaluate.exact_match_rate
    history = LossHistory(); trainer.fit(..., callbacks=[history]); history.losses  # one per step
"""

from __future__ import annotations

import keras

from ..evaluate import exact_match_rate
from .data import chat_prompt


def held_out_loss(trainer, data: dict, batch_size: int = 8) -> float:
    """Cross-entropy averaged over the response tokens of ``data`` (from ``format_examples``)."""
    results = trainer.evaluate(data["x"], data["y"], sample_weight=data["sample_weight"], batch_size=batch_size,
                               verbose=0, return_dict=True)
    return float(results["loss"])


def exact_match(model, examples, max_new_tokens: int = 32, batch_size: int = 16, progress: bool = True):
    """(fraction of examples whose greedy answer equals ``response`` after ``strip()``, the answers)."""
    examples = list(examples)
    answers = []
    batches = range(0, len(examples), batch_size)
    if progress:
        bar = keras.utils.Progbar(len(examples), unit_name="answer")
    for start in batches:
        chunk = examples[start:start + batch_size]
        answers += model.generate([chat_prompt(model.tokenizer, e["prompt"]) for e in chunk],
                                  max_new_tokens=max_new_tokens)
        if progress:
            bar.add(len(chunk))
    rate, _ = exact_match_rate(answers, [example["response"] for example in examples])   # strip() on both sides
    return rate, answers


class LossHistory(keras.callbacks.Callback):
    """The training loss of every step.

    Keras reports, after each batch, the *mean* loss since the epoch began (all batches of one
    size weigh the same): step ``k``'s own loss is ``k * mean_k - (k - 1) * mean_{k-1}``.
    """

    def __init__(self):
        super().__init__()
        self.losses = []
        self._previous_mean, self._batches = 0.0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._previous_mean, self._batches = 0.0, 0

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])
        self._batches += 1
        self.losses.append(self._batches * mean - (self._batches - 1) * self._previous_mean)
        self._previous_mean = mean
