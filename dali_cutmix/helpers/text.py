"""Words for counts in messages."""

from __future__ import annotations

from typing import Optional


def plural(n: int, word: str, many: Optional[str] = None) -> str:
    """``"1 file"``, ``"2,048 files"`` (``many``: the plural when it is not ``word + "s"``: ``"classes"``)."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"
