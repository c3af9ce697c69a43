"""RL tokenizers: a character-level one for the local demo, or a ``tokenizer.json`` file.

The char tokenizer (special tokens first, then printable ASCII) is small, deterministic and
offline: a tiny policy learns the task format on CPU in seconds. A ``tokenizer.json`` is what
a PretrainRun exports next to its Hugging Face weights, so RL continues from pretraining.
Both expose ``encode``, ``decode``, ``vocab_size``, ``eot_id`` and ``pad_id``.
"""

from __future__ import annotations

import string
from pathlib import Path

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


class FileTokenizer:
    """A Hugging Face ``tokenizers`` file; it must define codekiln's end-of-text token."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise ValueError(f"tokenizer: {file} does not exist (give 'char', a tokenizer.json, or a folder "
                             "holding one, such as a PretrainRun's export)")
        self.path = file
        self._tok = Tokenizer.from_file(str(file))
        eot = self._tok.token_to_id(EOT)
        if eot is None:
            raise ValueError(f"tokenizer {file}: has no {EOT} token (RL stops rollouts on it)")
        pad = self._tok.token_to_id(PAD)
        self.eot_id, self.pad_id = eot, eot if pad is None else pad

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special)


def build_tokenizer(spec: str, init_checkpoint: str | None = None) -> CharTokenizer | FileTokenizer:
    """``char``, a tokenizer file/folder, or ``auto``: the initCheckpoint folder's tokenizer.json, else char."""
    if spec == "auto":
        folder = Path(init_checkpoint) if init_checkpoint else None
        if folder is not None and (folder / "tokenizer.json").is_file():
            return FileTokenizer(folder)
        return CharTokenizer()
    return CharTokenizer() if spec == "char" else FileTokenizer(spec)
