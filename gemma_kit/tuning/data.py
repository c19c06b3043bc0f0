"""Prompt/response pairs -> the arrays ``model.fit`` trains on, with the loss on the response only.

One example ``{"prompt": "...", "response": "..."}`` becomes Gemma's chat turn::

    <bos><start_of_turn>user\\n{prompt}<end_of_turn>\\n<start_of_turn>model\\n{response}<end_of_turn>
    |------------------------- prompt: no loss ----------------------------||---- loss here -----|

Next-token prediction: the input is the sequence without its last token, the
target the sequence without its first. ``sample_weight`` is 1 where the
*target* is a response token (the closing ``<end_of_turn>`` included, so the
model learns to stop) and 0 on the prompt and on the right padding.

With ``response_length=R`` the targets are also gathered into ``R`` slots per
example (``x["target_positions"]``, ``y`` and ``sample_weight`` of shape
(batch, R)): ``ResponseLM`` (train.py) then computes logits for those positions
only, instead of 262,144 logits for every prompt token.

``TrainingBatches`` feeds ``fit`` in a fixed order that depends only on the step
number, so that a run resumed from a checkpoint sees the same batches as an
uninterrupted one.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np


def load_jsonl(path) -> list:
    """A list of dicts, one per non-empty line of a JSON Lines file."""
    examples = []
    with open(os.fspath(path), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    examples.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}, line {n}: not valid JSON ({error.msg})") from error
    return examples


def chat_prompt(tokenizer, prompt: str) -> str:
    """The user turn and the opening of the model turn, as generation sees it (no ``<bos>``)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}])


def encode_example(tokenizer, example, n: int = 0):
    """(prompt ids with ``<bos>``, response ids ending with ``<end_of_turn>``)."""
    if not isinstance(example, dict) or not isinstance(example.get("prompt"), str) \
            or not isinstance(example.get("response"), str):
        raise ValueError(f"example {n}: expected a dict with string fields 'prompt' and 'response', got "
                         f"{sorted(example) if isinstance(example, dict) else type(example).__name__}")
    prompt_ids = [tokenizer.bos_id] + tokenizer.encode(chat_prompt(tokenizer, example["prompt"]))
    response_ids = tokenizer.encode(example["response"]) + [tokenizer.token_to_id("<end_of_turn>")]
    return prompt_ids, response_ids


def format_examples(tokenizer, examples, sequence_length: int, response_length: int | None = None,
                    drop_longer: bool = False, encode=encode_example) -> dict:
    """``{"x": {"token_ids", "padding_mask"[, "target_positions"]}, "y", "sample_weight"}`` as NumPy arrays.

    Without ``response_length``: ``x`` arrays (n, sequence_length), ``y`` and
    ``sample_weight`` (n, sequence_length): ``backbone.fit(x, y, sample_weight=...)``.
    With it: ``y`` and ``sample_weight`` (n, response_length) and
    ``x["target_positions"]`` (n, response_length), for ``ResponseLM``.
    An example longer than ``sequence_length`` (or a response longer than
    ``response_length``) is an error naming it, not silently cut; with
    ``drop_longer=True`` it is left out instead (for training sets with a few outliers).
    ``encode(tokenizer, example, n) -> (prompt ids, response ids)`` turns one example into
    tokens: the chat turn here, the FIM prompt in ``fim_data.py``.
    """
    examples = list(examples)
    if drop_longer:
        examples = [e for i, e in enumerate(examples)
                    if fits(tokenizer, e, sequence_length, response_length, i, encode)]
    if not examples:
        raise ValueError("No examples to format")
    n = len(examples)
    token_ids = np.zeros((n, sequence_length), np.int32)             # pad id 0, on the right
    padding_mask = np.zeros((n, sequence_length), bool)
    targets = np.zeros((n, sequence_length), np.int32)
    weights = np.zeros((n, sequence_length), np.float32)
    for i, example in enumerate(examples):
        prompt_ids, response_ids = encode(tokenizer, example, i)
        ids = prompt_ids + response_ids
        if len(ids) - 1 > sequence_length:
            raise ValueError(f"example {i} has {len(ids) - 1} tokens (prompt {len(prompt_ids)}, response "
                             f"{len(response_ids)}), more than sequence_length={sequence_length}")
        if response_length is not None and len(response_ids) > response_length:
            raise ValueError(f"example {i}: its response has {len(response_ids)} tokens (with its end token), "
                             f"more than response_length={response_length}")
        length = len(ids) - 1
        token_ids[i, :length] = ids[:-1]
        padding_mask[i, :length] = True
        targets[i, :length] = ids[1:]
        weights[i, len(prompt_ids) - 1:length] = 1.0     # target j is token j + 1: the response starts here
    x = {"token_ids": token_ids, "padding_mask": padding_mask}
    if response_length is None:
        return {"x": x, "y": targets, "sample_weight": weights}
    positions = np.zeros((n, response_length), np.int32)
    for i in range(n):
        where = np.flatnonzero(weights[i])                               # the response's target positions
        positions[i, :len(where)] = where
    x["target_positions"] = positions
    gathered_weights = (np.arange(response_length)[None, :] < weights.sum(1, keepdims=True)).astype(np.float32)
    return {"x": x, "y": np.take_along_axis(targets, positions, axis=1) * gathered_weights.astype(np.int32),
            "sample_weight": gathered_weights}


def fits(tokenizer, example, sequence_length: int, response_length: int | None = None, n: int = 0,
         encode=encode_example) -> bool:
    """Whether ``example`` fits in ``sequence_length`` tokens (and its response in ``response_length``)."""
    prompt_ids, response_ids = encode(tokenizer, example, n)
    return (len(prompt_ids) + len(response_ids) - 1 <= sequence_length
            and (response_length is None or len(response_ids) <= response_length))


def select(data: dict, rows) -> dict:
    """The same dict of arrays, restricted to ``rows`` (an index array or a slice)."""
    return {key: select(value, rows) if isinstance(value, dict) else value[rows] for key, value in data.items()}


class TrainingBatches(keras.utils.PyDataset):
    """Batches for ``fit`` whose order depends only on the global step.

    ``steps_per_epoch`` batches form one Keras "epoch"; ``TrainingCheckpoint`` (checkpoint.py)
    saves after every epoch, so every ``steps_per_epoch`` steps, and a restarted ``fit`` resumes
    at the saved epoch. Batch ``i`` of epoch ``e`` is step ``e * steps_per_epoch + i`` of an
    endless stream that walks through the data in a new seeded shuffle each pass, so the
    resumed run sees exactly the batches the interrupted one would have seen.
    Call ``fit(batches, shuffle=False, callbacks=[batches.epoch_callback, ...])``: the callback tells
    the data which epoch it is, and ``shuffle=False`` stops Keras from reordering the batches of an
    epoch with NumPy's global random state (the data is shuffled here, with its own seed).
    """

    def __init__(self, data: dict, batch_size: int, steps_per_epoch: int, seed: int = 0):
        super().__init__()
        self.data, self.batch_size, self.steps_per_epoch, self.seed = data, batch_size, steps_per_epoch, seed
        self.size = len(data["y"])
        if batch_size > self.size:
            raise ValueError(f"batch_size={batch_size} is larger than the {self.size} examples")
        self.epoch = 0
        batches = self

        class _FollowEpochs(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                batches.epoch = epoch
        self.epoch_callback = _FollowEpochs()

    def __len__(self):
        return self.steps_per_epoch

    def rows(self, step: int) -> np.ndarray:
        """Example indices of global step ``step``."""
        per_pass = self.size // self.batch_size                     # whole batches per pass over the data
        epoch, index = divmod(step, per_pass)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        return order[index * self.batch_size:(index + 1) * self.batch_size]

    def __getitem__(self, index):
        batch = select(self.data, self.rows(self.epoch * self.steps_per_epoch + index))
        return batch["x"], batch["y"], batch["sample_weight"]
