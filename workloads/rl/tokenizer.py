"""A character-level tokenizer for the local demo (special tokens first, then printable ASCII).

Small, deterministic and offline: a tiny policy learns the task format on CPU in seconds.
Ids 0..len(SPECIAL_TOKENS)-1 are the shared special tokens.
"""

from __future__ import annotations

import string

from codekiln.workloads.special_tokens import EOT, PAD, SPECIAL_TOKENS

CHARS = "\n\t" + "".join(c for c in string.printable if c.isprintable())


class CharTokenizer:
    """Maps characters to ids; characters outside the vocabulary raise a clear error."""

    def __init__(self) -> None:
        self.itos = list(SPECIAL_TOKENS) + list(CHARS)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.eot_id = self.stoi[EOT]
        self.pad_id = self.stoi[PAD]

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the char tokenizer's vocabulary") from None

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        n_special = len(SPECIAL_TOKENS)
        return "".join(self.itos[i] for i in ids if not (skip_special and i < n_special))
