"""Request bodies with a memory budget that does not depend on their shape.

A body is read in chunks under a byte cap (413 — gzip bombs included, since the cap applies to
the decompressed stream) and a read deadline (408). Before any JSON document is built, a scan
of the raw bytes counts its values and measures its nesting (strings are skipped with one C-level
regular expression), so a small body of many tiny arrays, or a deep one, is refused with 413
instead of growing into hundreds of MiB of Python objects. Only then is the body parsed.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKETS = re.compile(rb"[^\[\]{}]+")


class BodyError(ValueError):
    """A body refused before parsing: ``status`` 400, 408 or 413, ``field`` always ``body``."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status
        self.field = "body"


@dataclass
class BodyLimits:
    max_bytes: int
    max_items: int
    max_depth: int
    read_timeout_s: float


async def read_body(request: web.Request, limits: BodyLimits, charge=None) -> bytearray:
    """The (decompressed) body, at most ``max_bytes``, within ``read_timeout_s``.

    ``charge(n)`` is called for every chunk received (a shared budget of bytes held); it may raise.
    """
    declared = request.content_length
    if declared is not None and declared > limits.max_bytes:
        raise BodyError(f"body: Content-Length {declared} exceeds the limit of {limits.max_bytes} bytes", 413)
    buf = bytearray()  # grows in place (mremap): about one copy of the body at its peak

    async def pump() -> None:
        async for chunk in request.content.iter_any():
            if len(buf) + len(chunk) > limits.max_bytes:
                raise BodyError(f"body: more than {limits.max_bytes} bytes (after decompression)", 413)
            if charge is not None:
                charge(len(chunk))  # may raise (the server's budget of bytes in flight: 429)
            buf.extend(chunk)

    try:
        await asyncio.wait_for(pump(), limits.read_timeout_s)
    except TimeoutError as exc:
        raise BodyError(f"body: not received within {limits.read_timeout_s}s", 408) from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise BodyError("body: too large", 413) from exc
    except HttpProcessingError as exc:  # a broken compressed stream or chunked encoding
        raise BodyError(f"body: could not be read ({type(exc).__name__}: {exc.message})", 400) from exc
    except (ConnectionError, OSError) as exc:  # the peer went away
        raise BodyError(f"body: could not be read ({type(exc).__name__})", 400) from exc
    return buf


def check_shape(body: bytes | bytearray, limits: BodyLimits) -> None:
    """Refuse (413) a JSON body with too many values or too deep a nesting, without parsing it."""
    skeleton = _STRING.sub(b'""', body)
    if not isinstance(skeleton, bytes):
        skeleton = bytes(skeleton)
    items = skeleton.count(b",") + skeleton.count(b"[") + skeleton.count(b"{") + 1
    if items > limits.max_items:
        raise BodyError(f"body: about {items} JSON values exceed the limit of {limits.max_items}", 413)
    if len(skeleton) > max(1 << 20, 64 * items):
        raise BodyError(f"body: {len(skeleton)} bytes outside JSON strings (numbers, blanks) is too much", 413)
    brackets = _BRACKETS.sub(b"", skeleton)
    depth = deepest = 0
    for ch in brackets:
        if ch in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limits.max_depth:
                    raise BodyError(f"body: JSON nested deeper than {limits.max_depth} levels", 413)
        else:
            depth -= 1
