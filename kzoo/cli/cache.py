"""``kzoo cache list`` and ``kzoo cache prune``: the base features kept by ``--cache disk``.

    kzoo cache list
    kzoo cache prune --older-than 30 --yes

Reading and deleting these folders needs no Keras, so both commands answer at once.
"""

from __future__ import annotations

import argparse
import time

from kzoo.transfer_learning import list_feature_caches, prune_feature_caches

__all__ = ["run_list", "run_prune"]


def run_list(args: argparse.Namespace) -> int:
    """One line per kept set of features, most recently used first."""
    entries = list_feature_caches(root=args.cache_dir)
    if not entries:
        print("no kept features (kzoo transfer --cache disk, or cache_features='disk', keeps them)")
        return 0
    print(f"{'key':12}  {'images':>8}  {'size':>10}  {'last used':16}  what")
    for entry in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
        what = entry.description
        label = f"{what.get('model', '?')} {what.get('role', '')}: {what.get('data', '')}"
        print(f"{entry.key[:12]}  {entry.rows:8,}  {_mib(entry.nbytes):>10}  {used:16}  {label}")
    total = sum(e.nbytes for e in entries)
    print(f"{len(entries)} entries, {_mib(total)} in {entries[0].path.parent}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """List (or with --yes delete) the selected kept features."""
    doomed = prune_feature_caches(
        older_than_days=args.older_than,
        keep_bytes=args.keep,
        dry_run=not args.yes,
        root=args.cache_dir,
    )
    verb = "removed" if args.yes else "would remove"
    for entry in doomed:
        print(f"{verb} {entry.path} ({_mib(entry.nbytes)})")
    total = _mib(sum(e.nbytes for e in doomed))
    if args.yes:
        print(f"removed {len(doomed)} entries, {total}")
    else:
        print(f"{len(doomed)} entries, {total}; pass --yes to delete them")
    return 0


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"
