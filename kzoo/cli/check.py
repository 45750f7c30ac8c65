"""``kzoo check``: what is wrong with folders of images, before training on them.

    kzoo check data/train data/validation data/test --json report.json

Prints the class counts and the findings grouped by kind; exits with 1 when any finding is an
error (undecodable files, leaks across splits, conflicting labels, class folders that differ
between splits), so a script can stop there. The files are only read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kzoo.datacheck import check_images

__all__ = ["run_check"]


def run_check(args: argparse.Namespace) -> int:
    """Check the folders, print the report, write it as JSON when asked."""
    report = check_images(
        *args.folders,
        quick=args.quick,
        workers=args.workers,
        near_threshold=args.near_threshold,
        min_side=args.min_side,
        imbalance=args.imbalance,
        cache=not args.no_cache,
        progress=not args.quiet,
    )
    print(report.to_table(limit=args.limit))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0 if report.ok else 1
