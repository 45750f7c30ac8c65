"""`kzoo` commands of the dsl group (placeholder until the group lands)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's sub-commands (none yet)."""
