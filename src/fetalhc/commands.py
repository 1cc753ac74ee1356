"""Sub-commands of the later pipeline steps (evaluate, predict, export, compare)."""

from __future__ import annotations


def register(sub, add) -> None:  # filled as the steps land
    return None
