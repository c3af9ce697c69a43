"""ChatML encoding of agent conversations into token ids and loss masks.

The layout is the one ``codekiln.workloads.train.sft.encode_chat`` produces (so collected
trajectories train with the SFT workload unchanged)::

    <|im_start|>{role}\\n{content}<|im_end|>\\n

Assistant content and its ``<|im_end|>`` carry loss; system, user and tool (observation) tokens
never do, and an assistant turn marked ``failed`` (its tool call failed) is masked too when
error masking is on. Tool messages carry their ``<tool_response>`` wrapper in ``content``.
"""

from __future__ import annotations

from collections.abc import Sequence

from codekiln.workloads.special_tokens import EOT, IM_END, IM_START


class ChatTokenizer:
    """One interface over the RL tokenizers (char / tokenizer.json) and a raw ``tokenizers.Tokenizer``.

    Text the tokenizer cannot represent (the char tokenizer's vocabulary is printable ASCII) is
    replaced by ``?`` instead of failing: observations are arbitrary program output.
    """

    def __init__(self, tok) -> None:
        self.tok = tok
        self.im_start, self.im_end = self.special_id(IM_START), self.special_id(IM_END)
        self.eot_id = self.special_id(EOT)
        self.newline = self.encode("\n")

    def special_id(self, token: str) -> int:
        """Id of a special token (``<|im_start|>``, ...); a clear error when the tokenizer lacks it."""
        tok = self.tok
        if hasattr(tok, "stoi"):
            tid = tok.stoi.get(token)
        elif hasattr(tok, "token_to_id"):
            tid = tok.token_to_id(token)
        else:
            tid = tok._tok.token_to_id(token)
        if tid is None:
            raise ValueError(f"tokenizer has no special token {token!r} (the agent's chat format needs it)")
        return tid

    def encode(self, text: str) -> list[int]:
        tok = self.tok
        if hasattr(tok, "stoi"):
            return [tok.stoi.get(c, tok.stoi["?"]) for c in text]
        if hasattr(tok, "token_to_id"):
            return tok.encode(text, add_special_tokens=False).ids
        return tok.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Text without special tokens."""
        if hasattr(self.tok, "token_to_id"):
            return self.tok.decode(list(ids), skip_special_tokens=True)
        return self.tok.decode(list(ids))

    @property
    def vocab_size(self) -> int:
        tok = self.tok
        return tok.get_vocab_size(with_added_tokens=True) if hasattr(tok, "get_vocab_size") else tok.vocab_size

    def header(self, role: str) -> list[int]:
        return [self.im_start, *self.encode(f"{role}\n")]


def encode_messages(messages: Sequence[dict], ct: ChatTokenizer, error_masking: bool = True
                    ) -> tuple[list[int], list[bool]]:
    """Token ids and loss mask of a whole conversation.

    Args:
        messages: ``{"role", "content", "failed"?}`` dicts (roles system, user, assistant, tool).
        ct: the tokenizer.
        error_masking: assistant turns with ``failed: true`` carry no loss (KAT error-masked SFT).
    """
    ids: list[int] = []
    mask: list[bool] = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"messages[{i}].role: {role!r} is not one of system, user, assistant, tool")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content: expected a string")
        header, body = ct.header(role), [*ct.encode(content), ct.im_end]
        learn = role == "assistant" and not (error_masking and m.get("failed", False))
        ids += header + body + ct.newline
        mask += [False] * len(header) + [learn] * len(body) + [False] * len(ct.newline)
    return ids, mask
