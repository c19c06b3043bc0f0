"""The object ``gemma_kit.load`` returns: a backbone, its tokenizer, and text in / text out.

    model = gemma_kit.load("gemma3_270m")
    model.generate("The capital of France is", max_new_tokens=16)   # -> " Paris..."
    for piece in model.stream("Once upon a time"): print(piece, end="")
    model.logits(model.tokenizer.encode("Hello"))                    # (1, seq, vocab) float32

Prompts get a BOS token in front, as Gemma was trained. Generation stops at
``<eos>`` and at the end of a chat turn (``<end_of_turn>``; Gemma 4: ``<turn|>``)
unless told otherwise. A Gemma 4 model asked to think (``enable_thinking=True`` in
``tokenizer.apply_chat_template``) writes its thoughts first: ``generate(...,
thoughts="hide")`` drops them, ``thoughts="return"`` returns ``(thoughts, answer)``.
"""

from __future__ import annotations

import itertools
from typing import Iterator, List, Sequence, Union

import numpy as np
from keras import ops

from .compile import compile_model_function
from .generate import Generator


def as_token_batch(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Integer ids (seq,) or (batch, seq) as (batch, seq), each checked to be in [0, vocab_size)."""
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"token ids must have shape (seq,) or (batch, seq) with seq >= 1, got {ids.shape}")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"token ids must be in [0, {vocab_size}), got values in [{ids.min()}, {ids.max()}]")
    return ids


class GemmaModel:
    def __init__(self, backbone, tokenizer, config, source: str = ""):
        from .chat import chat_format_of

        self.backbone, self.tokenizer, self.config, self.source = backbone, tokenizer, config, source
        if tokenizer:
            tokenizer.chat_format = chat_format_of(config)      # the family's chat template
        self.recompile()

    def recompile(self):
        """Compile generation and ``logits`` afresh: needed after the backbone's variables change
        (LoRA added or removed: a TensorFlow graph captures the variables it was traced with)."""
        self.generator = Generator(self.backbone)
        self._logits = compile_model_function(self.backbone, lambda ids: self.backbone(ids))

    def quantize(self, mode: str = "int8") -> "GemmaModel":
        """Keep the weights in int8 (a float32 scale per block of 32 weights; activations stay float32):
        a quarter of the memory, and on a CPU a faster decode (``nn/int8.py``). Returns the model."""
        from .nn.int8 import quantize_backbone

        if mode != "int8":
            raise ValueError(f"quantize supports mode='int8' (weight-only int8), got {mode!r}")
        quantize_backbone(self.backbone)
        self.recompile()
        return self

    def __repr__(self):
        return (f"GemmaModel({self.config.name!r}, {self.config.num_parameters():,} parameters, "
                f"dtype={self.backbone.dtype_policy.name}, source={self.source!r})")

    # -- helpers -----------------------------------------------------------------------------------
    def encode_prompt(self, prompt: str) -> List[int]:
        if not isinstance(prompt, str):
            raise TypeError(f"A prompt must be a string, got {type(prompt).__name__}")
        if not prompt:
            raise ValueError("The prompt is empty: give at least one character of text")
        return [self.tokenizer.bos_id] + self.tokenizer.encode(prompt)

    def check_lengths(self, prompts_ids, max_new_tokens):
        """ValueError unless every prompt plus ``max_new_tokens`` fits the model's maximum sequence length."""
        if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        limit = self.config.max_sequence_length
        for ids in prompts_ids:
            if len(ids) + max_new_tokens > limit:
                raise ValueError(f"The prompt is too long: {len(ids)} tokens + max_new_tokens={max_new_tokens} "
                                 f"exceeds the model's maximum sequence length of {limit} tokens")

    def stop_ids(self, stop_tokens=None) -> List[int]:
        """Token ids that end generation: by default ``<eos>`` and the end of a chat turn
        (``<end_of_turn>``, Gemma 4's ``<turn|>``), those the vocabulary has."""
        if stop_tokens is None:
            stop_tokens = ["<eos>", "<end_of_turn>", "<turn|>"]
        ids = []
        for token in stop_tokens:
            if isinstance(token, (int, np.integer)):
                ids.append(int(token))
            else:
                try:
                    ids.append(self.tokenizer.token_to_id(token))
                except (KeyError, ValueError):
                    continue   # a vocabulary without that special token (e.g. a tiny test model)
        return ids

    # -- public API --------------------------------------------------------------------------------
    def generate(self, prompt_or_prompts: Union[str, Sequence[str]], max_new_tokens: int = 64,
                 sampler: str = "greedy", temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, stop_tokens=None,
                 use_cache: bool = True, thoughts: str = "keep", speculative=None, prefill_chunk=None):
        """The new text for one prompt (a string) or for each of a list of prompts (a list).

        ``prefill_chunk`` (a power of two, e.g. 512): read a long prompt that many tokens at a
        time, appending each chunk to the cache: the same output, with the prompt's attention
        memory bounded by the chunk (``generate.py``).

        ``speculative``: "prompt_lookup", a ``PromptLookup(...)``, a smaller draft ``GemmaModel``
        (or ``DraftModel(model, max_draft=)``) with the same vocabulary, or for a Gemma 4 target its
        assistant (``Assistant(gemma_kit.load_assistant(path), max_draft=)``): speculative decoding, one
        prompt at a time, with the same output (``speculative.py``; stats in ``self.last_speculation``).

        ``thoughts`` (Gemma 4's thinking mode): "keep" the text as written, thought channel
        included; "hide" it, giving the answer alone; or "return" ``(thoughts, answer)`` pairs.
        """
        from .chat import split_thoughts

        if thoughts not in ("keep", "hide", "return"):
            raise ValueError(f"thoughts must be 'keep', 'hide' or 'return', got {thoughts!r}")
        single = isinstance(prompt_or_prompts, str)
        prompts = [prompt_or_prompts] if single else list(prompt_or_prompts)
        if not prompts:
            raise ValueError("No prompts given: pass a string or a non-empty list of strings")
        ids = self.generate_ids([self.encode_prompt(p) for p in prompts], max_new_tokens, sampler=sampler,
                                temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                stop_tokens=stop_tokens, use_cache=use_cache, speculative=speculative,
                                prefill_chunk=prefill_chunk)
        texts = [self.tokenizer.decode(row) for row in ids]    # the channel markers are text pieces
        if thoughts != "keep":
            texts = [split_thoughts(text) if thoughts == "return" else split_thoughts(text)[1] for text in texts]
        return texts[0] if single else texts

    def generate_ids(self, prompts_ids: List[List[int]], max_new_tokens: int = 64, stop_tokens=None,
                     speculative=None, **sampling) -> List[List[int]]:
        """Token-level generation: the new ids per prompt (stop token excluded)."""
        self.check_lengths(prompts_ids, max_new_tokens)
        stop = self.stop_ids(stop_tokens)
        if speculative is not None:
            from .speculative import speculative_tokens
            if sampling.pop("prefill_chunk", None) is not None:
                raise ValueError("prefill_chunk does not apply with speculative=: speculative decoding reads "
                                 "its prompt in one pass; pass one or the other")
            steps = [[token] for token in speculative_tokens(self, prompts_ids, max_new_tokens, speculative,
                                                             stop_ids=stop, **sampling)]
        else:
            steps = list(self.generator.tokens(prompts_ids, max_new_tokens, stop_ids=stop, **sampling))
        out = []
        for row in range(len(prompts_ids)):
            ids = [int(step[row]) for step in steps]
            cut = next((i for i, t in enumerate(ids) if t in stop), len(ids))
            out.append(ids[:cut])
        return out

    def stream(self, prompt: str, max_new_tokens: int = 64, stop_tokens=None, **sampling) -> Iterator[str]:
        """Yield the new text piece by piece as tokens are produced."""
        from .tokenizer import StreamingDecoder

        ids = self.encode_prompt(prompt)
        self.check_lengths([ids], max_new_tokens)
        stop = self.stop_ids(stop_tokens)
        steps = self.generator.tokens([ids], max_new_tokens, stop_ids=stop, **sampling)
        tokens = itertools.takewhile(lambda token: token not in stop, (int(step[0]) for step in steps))
        yield from StreamingDecoder(self.tokenizer).pieces(tokens)

    def complete(self, before, after, **kw):
        """Fill in the middle: the code between ``before`` and ``after`` (two strings -> a string, two
        lists -> a list, in one batched generation), with CodeGemma's markers or a FIM adapter's (fim.py)."""
        from .fim import complete
        return complete(self, before, after, **kw)

    def save_preset(self, folder) -> str:
        """Write this model as a keras-hub preset folder (``keras_hub.models.*CausalLM.from_preset`` loads it)."""
        from .export.keras_hub import save_preset
        return save_preset(self, folder)

    def logits(self, token_ids) -> np.ndarray:
        """float32 logits (batch, seq, vocab) for token ids (seq,) or (batch, seq); no BOS is added."""
        ids = as_token_batch(np.asarray(token_ids, dtype=np.int32), self.config.vocab_size)
        return np.asarray(ops.convert_to_numpy(self._logits(ops.convert_to_tensor(ids))), np.float32)

    def save_hf(self, folder) -> str:
        """Save as a Hugging Face folder that transformers' ``from_pretrained`` loads (see export/huggingface.py)."""
        from .export.huggingface import save_hf
        return save_hf(self, folder)

    def chat(self, system: str | None = None, max_length: int | None = None, enable_thinking: bool = False):
        """A multi-turn chat whose cache lives between turns (``session.py``): ``.send(message)`` -> answer.

        ``max_length``: tokens the cache holds (default: the model's maximum, at most 4096);
        ``enable_thinking``: Gemma 4's thinking mode, for the whole conversation.
        """
        from .session import ChatSession
        return ChatSession(self, system=system, max_length=max_length, enable_thinking=enable_thinking)
