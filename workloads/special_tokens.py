"""Special tokens shared by the tokenizer, FIM, packing, SFT and RL (torch-free)."""

from __future__ import annotations

EOT = "<|endoftext|>"  # end of a document; also the packing separator
PAD = "<|pad|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_MIDDLE = "<|fim_middle|>"
FILE_SEP = "<|file_sep|>"  # before each file of a repository-level document
REPO_NAME = "<|repo_name|>"
IM_START = "<|im_start|>"  # chat turn start: <|im_start|>role\n ... <|im_end|>
IM_END = "<|im_end|>"

# Order fixes the ids 0..N-1 in every tokenizer codekiln trains.
SPECIAL_TOKENS: tuple[str, ...] = (EOT, PAD, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, FILE_SEP, REPO_NAME, IM_START, IM_END)
