"""Pull the program out of a model completion: the last fenced block, language-aware."""

from __future__ import annotations

import re

from codekiln.workloads.sandbox.languages import canonical

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.S | re.M)
_EXTRA_TAGS = {"python": {"python", "py", "python3", "py3"}, "cpp": {"cpp", "c++", "cc", "cxx"},
               "nodejs": {"javascript", "js", "node", "nodejs", "jsx", "mjs"}, "bash": {"bash", "sh", "shell", "zsh"}}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block as (info tag lower-cased, body), in order; an unclosed last fence runs to the end."""
    return [(m.group(2).strip().lower(), m.group(3)) for m in _FENCE.finditer(text)]


def extract_code(completion: str, language: str = "python", *, require_fence: bool = False) -> str | None:
    """The code to run from ``completion``.

    Picks the last fenced block tagged with ``language`` (or an alias: ```` ```py ````,
    ```` ```js ````…); else the last untagged block; else the last block of any tag. Without
    any fence, returns the whole completion stripped, or None when ``require_fence``.
    """
    want = canonical(language) or language.lower()
    tags = _EXTRA_TAGS.get(want, set()) | {want}
    blocks = fenced_blocks(completion)
    for chooser in (lambda tag: tag in tags or canonical(tag) == want, lambda tag: tag == "", lambda tag: True):
        picked = [body for tag, body in blocks if chooser(tag)]
        if picked:
            return picked[-1].rstrip() + "\n"
    if require_fence:
        return None
    text = completion.strip()
    return text + "\n" if text else None
