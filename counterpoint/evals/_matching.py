"""Maximum bipartite matching of made calls to expected calls (private to the checker)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["maximum_matching"]


def maximum_matching(compatible: Sequence[Sequence[bool]]) -> list[int | None]:
    """Match rows to columns of ``compatible`` (``compatible[r][c]``: row r may take column c).

    Returns, for each column, the row matched to it or ``None``; the number of matched columns is
    the largest possible (Kuhn's augmenting paths: a greedy choice is undone when a later column
    needs its row). Sizes here are a handful of calls, so the O(V·E) cost does not matter.
    """
    columns = len(compatible[0]) if compatible else 0
    row_of: list[int | None] = [None] * columns
    col_of: list[int | None] = [None] * len(compatible)

    def augment(col: int, seen: set[int]) -> bool:
        for row in range(len(compatible)):
            if not compatible[row][col] or row in seen:
                continue
            seen.add(row)
            previous = col_of[row]
            if previous is None or augment(previous, seen):
                row_of[col] = row
                col_of[row] = col
                return True
        return False

    for col in range(columns):
        augment(col, set())
    return row_of
