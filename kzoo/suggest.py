"""Did-you-mean suggestions shared by every error that names something unknown.

Written by hand because difflib ranks by longest common blocks and so misses transpositions
('PM2' for 'MP2'); the optimal-string-alignment distance counts a swap of neighbours as one edit.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["closest", "edit_distance"]


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps.

    Args:
        a: First string.
        b: Second string.

    Returns:
        The number of single-character edits that turn ``a`` into ``b``.
    """
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def closest(name: str, candidates: Iterable[str], max_results: int = 3) -> list[str]:
    """The candidates nearest to ``name``, best first, among those close enough to be a typo.

    Case is ignored when measuring, so 'Vgg19' still finds 'vgg19'.

    Args:
        name: What the user wrote.
        candidates: The valid names.
        max_results: At most this many suggestions.

    Returns:
        Up to ``max_results`` candidates within a third of the name's length in edits (at least 1).
    """
    limit = max(1, len(name) // 3)
    scored = sorted(
        (edit_distance(name.lower(), c.lower()), c) for c in set(candidates) if c != name
    )
    return [c for d, c in scored if d <= limit][:max_results]
