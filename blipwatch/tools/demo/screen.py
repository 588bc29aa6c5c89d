"""The demo's terminal: a live one-line status under the lines printed, and short numbers and
times that fit it."""

from __future__ import annotations

import shutil
import time
from typing import TextIO


class Screen:
    """A live one-line status on a terminal; plain lines (status every 10 s) otherwise, for CI logs."""

    def __init__(self, out: TextIO):
        self.out = out
        self.live = out.isatty()
        self.status = ""
        self.last_plain_status = 0.0

    def color(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.live else text

    def line(self, text: str = "") -> None:
        if self.live:
            self.out.write("\r\x1b[2K" + text + "\n" + self._fit(self.status))
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def set_status(self, text: str, force: bool = False) -> None:
        self.status = text
        if self.live:
            self.out.write("\r\x1b[2K" + self._fit(text))
            self.out.flush()
        elif force or time.monotonic() - self.last_plain_status >= 10:
            self.last_plain_status = time.monotonic()
            self.out.write(text + "\n")
            self.out.flush()

    def clear_status(self) -> None:
        if self.live and self.status:
            self.out.write("\r\x1b[2K")
            self.out.flush()
        self.status = ""

    def _fit(self, text: str) -> str:
        width = shutil.get_terminal_size((120, 24)).columns
        return text if len(text) < width else text[:width - 2] + "…"


def short(count: float) -> str:
    """``950``, ``31.5k``, ``1.2M``: numbers that fit a status line."""
    if count < 10_000:
        return f"{count:,.0f}"
    if count < 1_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.2f}M"


def hhmm(text: str) -> str:
    return text[11:16] + "Z" if len(text) >= 16 else "--:--"
