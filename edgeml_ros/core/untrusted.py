"""Helpers for untrusted input: quoting it, parsing its numbers, remembering what came.

A sender controls every field of a message, its strings included: an error message that quotes
a field quotes at most SHOWN_CHARS of it, so a megabyte-long `encoding` does not become a
megabyte-long reason in the reply.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

SHOWN_CHARS = 64


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """repr(value) cut to `limit` characters (with the full length said where it was cut)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def non_negative(text: str, what: str, where: str, error: type[ValueError] = ValueError) -> float:
    """`text` as a finite number >= 0; else `error` naming `where` and `what`."""
    try:
        value = float(text)
    except ValueError:
        raise error(f"{where}: {what} {text.strip()!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise error(f"{where}: {what} {text.strip()!r} must be a finite number >= 0")
    return value


def shown_shape(shape: Sequence[int], limit: int = 8) -> str:
    """A shape as `[1, 32, 7, 7]`; a long one as its first `limit` sizes and its length."""
    if len(shape) <= limit:
        return str([int(d) for d in shape])
    return f"[{', '.join(str(int(d)) for d in shape[:limit])}, ...] ({len(shape)} dimensions)"


class RecentKeys:
    """The last `size` keys seen: a duplicate filter with bounded memory."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size}")
        self.size = size
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def seen(self, key: Hashable) -> bool:
        """Whether `key` came before (among the last `size`); remembers it either way."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._keys)
