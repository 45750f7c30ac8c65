"""What a data check found: :class:`Finding` and :class:`DataReport`, as data, JSON and a table.

The kinds of finding, their severity and what each means are one table, :data:`KINDS`. An
``error`` breaks training or makes its metrics wrong; a ``warning`` deserves a look; ``info``
is said for completeness.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["KINDS", "QUICK_KINDS", "SEVERITIES", "DataReport", "Finding"]

SEVERITIES = ("error", "warning", "info")

#: kind -> (severity, what it means)
KINDS: dict[str, tuple[str, str]] = {
    "undecodable": ("error", "files that do not decode (Keras's loader stops at the first)"),
    "leak": ("error", "the same image in more than one split: the later splits' scores lie"),
    "conflicting_labels": ("error", "the same image under more than one class"),
    "class_mismatch": ("error", "splits with different class folders: label indices shift"),
    "no_classes": ("error", "a folder without class sub-folders"),
    "nested_splits": ("error", "a folder of splits given where class folders were expected"),
    "duplicate": ("warning", "the same image more than once in one class"),
    "wrong_extension": ("warning", "files whose name says another format than their bytes"),
    "mode": ("warning", "CMYK, 16-bit, palette or transparent images: converted on loading"),
    "exif_rotation": ("warning", "pixels stored rotated or mirrored: Keras ignores EXIF"),
    "tiny": ("warning", "images much smaller than the rest"),
    "blank": ("warning", "images of one flat colour"),
    "imbalance": ("warning", "classes whose sizes differ by more than the allowed ratio"),
    "empty_class": ("warning", "class folders without a readable image"),
    "skipped": ("info", "files that are not images by their name (not checked)"),
}
#: What a quick check looks for: what would stop training or make its scores lie (and a
#: folder of splits, which would train a model to tell the splits apart).
QUICK_KINDS = frozenset({"undecodable", "leak", "nested_splits"})


@dataclass(frozen=True)
class Finding:
    """One problem, with the files it concerns.

    Attributes:
        kind: A key of :data:`KINDS`, e.g. ``"undecodable"`` or ``"leak"``.
        severity: ``"error"``, ``"warning"`` or ``"info"`` (from :data:`KINDS`).
        message: What is wrong, in words.
        paths: The files (or folders) concerned, as paths under the checked folders.
        details: Facts behind the message, e.g. ``{"exact": False, "similarity": 0.996}``.
    """

    kind: str
    severity: str
    message: str
    paths: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class DataReport:
    """The result of :func:`kzoo.check_images`.

    Attributes:
        folders: The checked folders, one per split.
        splits: Each folder's split name (its folder name, made unique).
        counts: Readable images per class, per split: ``{"train": {"cat": 120, ...}, ...}``.
        findings: What was found, errors first.
        files: How many image files were checked.
        decoded: How many of them were decoded by this check (the others came from the cache).
        quick: Whether only the quick checks ran (undecodable files and leaks).
        settings: The thresholds used (``near_threshold``, ``min_side``, ``imbalance``).
    """

    folders: tuple[str, ...]
    splits: tuple[str, ...]
    counts: dict[str, dict[str, int]]
    findings: list[Finding]
    files: int
    decoded: int
    quick: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether no finding is an error."""
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        """The findings of severity ``"error"``."""
        return [f for f in self.findings if f.severity == "error"]

    def of_kind(self, kind: str) -> list[Finding]:
        """The findings of one kind (a key of :data:`KINDS`)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}. Received: kind={kind!r}")
        return [f for f in self.findings if f.kind == kind]

    def flagged(self) -> set[str]:
        """Every path (image, or folder for class-level findings) a warning or error names."""
        return {p for f in self.findings if f.severity != "info" for p in f.paths}

    def summary(self) -> dict[str, int]:
        """How many findings of each kind, in the order of :data:`KINDS`."""
        counted = Counter(f.kind for f in self.findings)
        return {kind: counted[kind] for kind in KINDS if counted[kind]}

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``json.dumps(report.to_dict())``)."""
        return {
            "folders": list(self.folders),
            "splits": list(self.splits),
            "files": self.files,
            "decoded": self.decoded,
            "quick": self.quick,
            "settings": dict(self.settings),
            "counts": {split: dict(classes) for split, classes in self.counts.items()},
            "summary": self.summary(),
            "findings": [{**asdict(f), "paths": list(f.paths)} for f in self.findings],
        }

    def to_table(self, limit: int = 10) -> str:
        """The report as text for a terminal: class counts, then findings grouped by kind.

        Args:
            limit: At most this many findings are listed per kind (all are counted).
        """
        n_classes = len({c for classes in self.counts.values() for c in classes})
        lines = [
            f"{self.files:,} image files in {len(self.splits)} split(s) "
            f"({', '.join(self.splits)}), {n_classes} classes; {self.decoded:,} decoded, "
            f"{self.files - self.decoded:,} from the cache"
            + (" (quick check)" if self.quick else "")
        ]
        width = max([len("split"), *(len(s) for s in self.splits)])
        lines.append(f"{'split':<{width}}  classes  images  smallest class  largest class")
        for split in self.splits:
            counts = self.counts.get(split, {})
            if counts:
                low = min(counts, key=counts.get)
                high = max(counts, key=counts.get)
                extremes = f"{f'{low} ({counts[low]:,})':<14}  {high} ({counts[high]:,})"
            else:
                extremes = "-"
            lines.append(
                f"{split:<{width}}  {len(counts):>7}  {sum(counts.values()):>6,}  {extremes}"
            )
        by_kind: dict[str, list[Finding]] = {}
        for finding in self.findings:
            by_kind.setdefault(finding.kind, []).append(finding)
        for kind, found in by_kind.items():
            severity, meaning = KINDS[kind]
            lines.append(f"\n{severity}: {kind} ({len(found):,}): {meaning}")
            for finding in found[:limit]:
                lines.append(f"  {', '.join(finding.paths[:4])}")
                more = f" (+{len(finding.paths) - 4} more)" if len(finding.paths) > 4 else ""
                lines.append(f"    {finding.message}{more}")
            if len(found) > limit:
                lines.append(f"  ... and {len(found) - limit:,} more")
        counted = Counter(f.severity for f in self.findings)
        words = {"error": "error", "warning": "warning", "info": "note"}
        lines.append(
            "\n"
            + ", ".join(
                f"{counted[s]:,} {words[s]}{'' if counted[s] == 1 else 's'}" for s in SEVERITIES
            )
        )
        return "\n".join(lines)
