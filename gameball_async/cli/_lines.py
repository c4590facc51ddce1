"""Input line numbers of ``gameball-batch``: a chunk's lines, and the lines already sent.

A chunk names its records by their input lines, kept as sorted ``[first, last]``
pairs: compact for the long runs of consecutive lines a file gives, and the
form the manifest stores.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

__all__ = ["Coverage", "LineRanges"]


class LineRanges:
    """Input line numbers as sorted ``[first, last]`` pairs (compact for runs)."""

    __slots__ = ("count", "pairs")

    def __init__(self, pairs: Iterable[Iterable[int]] = ()) -> None:
        self.pairs: list[list[int]] = [[int(a), int(b)] for a, b in pairs]
        self.count = sum(b - a + 1 for a, b in self.pairs)

    def add(self, line: int) -> None:
        """Append a line number greater than every one held."""
        if self.pairs and self.pairs[-1][1] == line - 1:
            self.pairs[-1][1] = line
        else:
            self.pairs.append([line, line])
        self.count += 1

    def __iter__(self) -> Iterator[int]:
        for first, last in self.pairs:
            yield from range(first, last + 1)

    @property
    def first(self) -> int:
        """The smallest line number (0 when empty)."""
        return self.pairs[0][0] if self.pairs else 0

    @property
    def last(self) -> int:
        """The largest line number (0 when empty)."""
        return self.pairs[-1][1] if self.pairs else 0

    def describe(self) -> str:
        """``"2-1001"`` or ``"2-10, 12-1002"`` (shortened when long)."""
        parts = [f"{a}-{b}" if a != b else str(a) for a, b in self.pairs[:3]]
        more = f", +{len(self.pairs) - 3:,} ranges" if len(self.pairs) > 3 else ""
        return ", ".join(parts) + more


class Coverage:
    """A set of line numbers built from many :class:`LineRanges`, with fast lookup."""

    __slots__ = ("_firsts", "_lasts")

    def __init__(self, ranges: Iterable[LineRanges]) -> None:
        pairs = sorted((a, b) for r in ranges for a, b in r.pairs)
        self._firsts = [a for a, _ in pairs]
        self._lasts = [b for _, b in pairs]

    def __contains__(self, line: object) -> bool:
        if not isinstance(line, int):
            return False
        at = bisect.bisect_right(self._firsts, line) - 1
        return at >= 0 and line <= self._lasts[at]
