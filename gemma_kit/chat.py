"""Chat formats: how a conversation becomes the one string an instruction-tuned Gemma reads.

A chat model sees no "messages", only text with turn markers (single tokens) around each
turn; after the last turn comes the start of a model turn, and the model writes the rest.
Each function here gives the text of the official Jinja chat template of its family, for
text conversations, in plain Python. None of them writes "<bos>": encode the text with
``tokenizer.encode(text, add_bos=True)``. Roles: "user", "model" ("assistant" is accepted).

Gemma 1-3 (``gemma3_chat``)::

    <start_of_turn>user
    You are terse.

    2+2?<end_of_turn>
    <start_of_turn>model
    4<end_of_turn>
    <start_of_turn>model                      <- the generation prompt

There is no system turn: a leading system message is put in front of the first user
message. Turns alternate user/model, starting with the user.

Gemma 4 (``gemma4_chat``, template of google/gemma-4-E2B-it and -E4B-it, 2026-07-09)::

    <|turn>system
    <|think|>                                 <- only with enable_thinking=True
    You are terse.<turn|>
    <|turn>user
    2+2?<turn|>
    <|turn>model
    4<turn|>
    <|turn>model                              <- the generation prompt

There is a real system turn, written when the first message is a system message or when
thinking is on. With thinking on the model first writes its thoughts in a channel,
``<|channel>thought\\n...<channel|>``, then its answer: ``split_thoughts`` separates them.
Thoughts are not replayed: a thought channel left in a model message's content is cut
out, and a message's ``reasoning`` (or ``thinking``, ``reasoning_content``) is written
only when the message comes after the last user message. The 26B-A4B and 31B template
writes one thing more: with thinking off, its generation prompt closes an empty thought
channel (``<|channel>thought\\n<channel|>``) so the model answers at once; pass
``empty_thought=True``.
Roles are free-form: turns need not alternate and a later system message is a system turn.
Tool declarations, tool calls and images are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Messages = Sequence[Mapping[str, object]]


def _content(message: Mapping, n: int) -> str:
    content = message.get("content")
    if not isinstance(content, str):
        raise TypeError(f"message {n}: content must be a str, got {type(content).__name__}")
    return content


# --- Gemma 1, 2 and 3 ----------------------------------------------------------
def gemma3_chat(messages: Messages, add_generation_prompt: bool = True) -> str:
    """Format a conversation the way Gemma 3's official chat template does.

    Gemma has two roles, "user" and "model" ("assistant" is accepted as
    "model"). There is no system turn: a leading system message is put in
    front of the first user message, followed by a blank line. Turns must
    alternate, starting with the user. The text has no "<bos>": encode it
    with `add_bos=True`.
    """
    messages = list(messages)
    prefix = ""
    if messages and messages[0].get("role") == "system":
        prefix = _content(messages[0], 0) + "\n\n"
        messages = messages[1:]
        if not messages:
            raise ValueError("a system message must be followed by a user message")
    parts = []
    for n, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "model", "assistant", "system"):
            raise ValueError(f"message {n}: unknown role {role!r}; "
                             "expected 'user', 'model', 'assistant' or 'system'")
        if role == "system":
            raise ValueError(f"message {n}: Gemma has no system turn; a system "
                             "message may only come first")
        role = "model" if role == "assistant" else role
        if (role == "user") != (n % 2 == 0):
            raise ValueError("conversation roles must alternate user/model/user/..., "
                             f"starting with user; message {n} is {role!r}")
        text = (prefix if n == 0 else "") + _content(message, n).strip()
        parts.append(f"<start_of_turn>{role}\n{text}<end_of_turn>\n")
    if add_generation_prompt:
        parts.append("<start_of_turn>model\n")
    return "".join(parts)


# --- Gemma 4 -------------------------------------------------------------------
THOUGHT_OPEN, THOUGHT_CLOSE = "<|channel>", "<channel|>"   # each one token
_ROLES = ("user", "model", "assistant", "system")


def _thought(message: Mapping, n: int) -> str:
    """A message's own thoughts, read as transformers passes them to the template."""
    # transformers copies the first non-None of these to `reasoning_content`;
    # the template reads `reasoning or reasoning_content`.
    alias = next((message[k] for k in ("reasoning_content", "thinking", "reasoning")
                  if message.get(k) is not None), None)
    thought = message.get("reasoning") or alias
    if thought and not isinstance(thought, str):
        raise TypeError(f"message {n}: reasoning must be a str, got {type(thought).__name__}")
    return thought or ""


def _strip_thought_channels(text: str) -> str:
    """A model message's content without its thought channels (the template's strip_thinking)."""
    # "a<|channel>t<channel|>b" -> ["a<|channel>t", "b"] -> "a" + "b"; an unclosed channel runs to the end.
    return "".join(part.split(THOUGHT_OPEN)[0] for part in text.split(THOUGHT_CLOSE)).strip()


def gemma4_chat(messages: Messages, add_generation_prompt: bool = True,
                enable_thinking: bool = False, *, empty_thought: bool = False) -> str:
    """Format a conversation the way Gemma 4's official chat template does (text only).

    The same string as the template of google/gemma-4-E2B-it / -E4B-it, without the
    leading "<bos>" (encode with `add_bos=True`). `enable_thinking` writes `<|think|>` at
    the top of the system turn. `empty_thought=True` gives the 26B-A4B / 31B template: with
    thinking off, the generation prompt ends in an empty, closed thought channel.
    """
    messages = list(messages)
    for n, message in enumerate(messages):
        if message.get("role") not in _ROLES:
            raise ValueError(f"message {n}: unknown role {message.get('role')!r}; "
                             "expected 'user', 'model', 'assistant' or 'system'")
        if message.get("tool_calls") or message.get("tool_responses"):
            raise ValueError(f"message {n}: tool calls are not supported by gemma4_chat")
        _content(message, n)                                   # type checks before any output
        _thought(message, n)
    parts = []
    start = 1 if messages and messages[0]["role"] == "system" else 0  # messages[start:] are turns
    if enable_thinking or start:
        system = messages[0]["content"].strip() if start else ""
        parts.append("<|turn>system\n" + ("<|think|>\n" if enable_thinking else "")
                     + system + "<turn|>\n")
    raw = [m["role"] for m in messages[start:]]               # roles as given, not mapped
    last_user = max((i for i, r in enumerate(raw) if r == "user"), default=-1)
    for i, message in enumerate(messages[start:]):
        role = "model" if raw[i] == "assistant" else raw[i]
        # An "assistant" message followed by another model message is one turn with it:
        # no <turn|> after the first, no <|turn>model before the second. (The template
        # tests the given role "assistant" here, so "model" messages never merge this way.)
        if not (role == "model" and i > 0 and raw[i - 1] == "assistant"):
            parts.append(f"<|turn>{role}\n")
        thought = _thought(message, start + i)
        if thought and i > last_user:                          # no thoughts before a later user turn
            parts.append(f"{THOUGHT_OPEN}thought\n{thought}\n{THOUGHT_CLOSE}")
        text = message["content"]
        parts.append(_strip_thought_channels(text) if role == "model" else text.strip())
        if not (role == "model" and i + 1 < len(raw) and raw[i + 1] == "assistant"):
            parts.append("<turn|>\n")
    if add_generation_prompt:
        parts.append("<|turn>model\n")
        if empty_thought and not enable_thinking:
            parts.append(f"{THOUGHT_OPEN}thought\n{THOUGHT_CLOSE}")
    return "".join(parts)


def split_thoughts(text: str) -> tuple[str, str]:
    """(thoughts, answer) of the text a Gemma 4 model wrote after the generation prompt.

    "<|channel>thought\\nLet me add.<channel|>4<turn|>" -> ("Let me add.", "4"). Without a
    channel the thoughts are "". Generation stopped mid-thought (no <channel|>): everything
    is thoughts and the answer is "". Text that starts inside the channel (the prompt
    opened it) and closes it: what comes before <channel|> is thoughts. Both parts are
    stripped of surrounding whitespace and the answer of a final <turn|>.
    """
    head, closed, _ = text.partition(THOUGHT_CLOSE)
    if closed and THOUGHT_OPEN not in head:
        text = THOUGHT_OPEN + text                             # the opener was in the prompt
    answer, *channels = text.split(THOUGHT_OPEN)               # channels: ["thought\n...<channel|>rest"]
    thoughts = []
    for channel in channels:
        thought, _, rest = channel.partition(THOUGHT_CLOSE)    # unclosed: rest == ""
        name, _, body = thought.partition("\n")               # the channel's name, "thought"
        thoughts.append((body if name == "thought" else thought).strip())
        answer += rest
    answer = answer.strip().removesuffix("<turn|>").strip()
    return "\n".join(t for t in thoughts if t), answer


def gemma4_large_chat(messages: Messages, add_generation_prompt: bool = True, enable_thinking: bool = False) -> str:
    """The 26B-A4B and 31B template: ``gemma4_chat`` with the empty thought channel when thinking is off."""
    return gemma4_chat(messages, add_generation_prompt, enable_thinking=enable_thinking, empty_thought=True)


CHAT_FORMATS = {"gemma3": gemma3_chat, "gemma4": gemma4_chat, "gemma4_large": gemma4_large_chat}


def chat_format_of(config) -> str:
    """The chat format of a model: Gemma 1-3's, or one of Gemma 4's two templates. The E2B/E4B template
    (models with per-layer embeddings) and the 26B-A4B/31B one (without) differ in one place."""
    if type(config).__name__ != "Gemma4Config":
        return "gemma3"
    return "gemma4" if config.per_layer_input_dim else "gemma4_large"
