"""Command-line help from docstrings: the code's markup (``literal``, `name`) shown as plain text."""

from __future__ import annotations

import re

__all__ = ["plain"]


def plain(text: str | None, first_paragraph: bool = False) -> str:
    """``text`` without backtick markup; with ``first_paragraph``, only up to the first blank line."""
    text = (text or "").strip()
    if first_paragraph:
        text = text.split("\n\n")[0]
    return re.sub(r"``([^`]+)``|`([^`]+)`", lambda m: m.group(1) or m.group(2), text)
