"""``check_images``: find what is wrong with folders of images before training on them.

Each folder holds one sub-folder per class (what ``keras.utils.image_dataset_from_directory``
reads); several folders are splits (train, validation, test). Every file is read, hashed and
decoded once, in worker processes, and its facts are cached (:mod:`.factcache`), so a second
check of unchanged files decodes nothing. The data is only ever read.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import logging
import multiprocessing
import os
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kzoo.datacheck.report import KINDS, QUICK_KINDS, DataReport, Finding
from kzoo.datacheck.similarity import clusters, normalised, similar_pairs
from kzoo.errors import ImageError, KzooError

__all__ = ["check_images"]

log = logging.getLogger("kzoo")

_IN_PROCESS_BELOW = 64  # fewer files to decode than this: worker start-up would cost more
_NORMAL_MODES = ("RGB", "L")
_THREADED = ("tensorflow", "jax", "torch")  # libraries whose thread pools make a fork unsafe


class _Progress(tqdm):
    """tqdm without its monitor thread: a thread would make forking the workers unsafe."""

    monitor_interval = 0


@dataclass(frozen=True)
class _Image:
    path: str
    split: str
    label: str
    facts: object  # inspection.FileFacts


def check_images(
    folder: str | os.PathLike[str],
    *more_folders: str | os.PathLike[str],
    quick: bool = False,
    workers: int | None = None,
    near_threshold: float = 0.99,
    min_side: int | None = None,
    imbalance: float = 3.0,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> DataReport:
    """Check folders of images for what breaks training or makes its scores lie.

    Finds files that do not decode (empty, truncated, not an image), files named for another
    format, identical files (same bytes) and near-identical images (the same picture
    re-encoded, resized or re-coloured) within a class, across classes (conflicting labels) and
    across splits (leaks); counts each class; flags imbalance, CMYK/16-bit/palette/transparent
    images, EXIF-rotated, tiny and blank images. The files are never modified.

    Args:
        folder: A folder with one sub-folder per class.
        *more_folders: More such folders: together they are splits (e.g. train, validation,
            test), each named by its folder.
        quick: Only look for undecodable files, leaks across splits and a folder of splits
            given as one: what a training run needs to know first. The files are read and
            cached all the same.
        workers: Processes that decode; None: one per CPU. With 1, or fewer than 64 files to
            decode, the check decodes in this process.
        near_threshold: Two images are near duplicates when the correlation of their 16x16
            grey thumbnails is at least this, in (0, 1]. At 0.99 (the default), none of the
            5,000 distinct offline MNIST digits is flagged, and re-encoded JPEG copies are.
        min_side: An image whose shorter side is below this many pixels is tiny; None: a
            quarter of the median shorter side of all the images.
        imbalance: Flag a split whose largest class has more than this many times the images
            of its smallest.
        cache: Read and write the facts cache (keyed by path, size and modification time).
        cache_dir: The cache root (default: ``KZOO_HOME``, else the platform cache folder).
        progress: Show a progress bar while decoding.

    Returns:
        A :class:`~kzoo.datacheck.DataReport`: ``.findings``, ``.counts``, ``.ok``,
        ``.to_dict()`` for JSON and ``.to_table()`` for a terminal.

    Raises:
        ValueError: A folder does not exist or is given twice, or a threshold is out of range.
        ImageError: Pillow is not installed.
    """
    folders = [Path(f) for f in (folder, *more_folders)]
    _check_arguments(folders, workers, near_threshold, min_side, imbalance)
    if importlib.util.find_spec("PIL") is None:
        raise ImageError(
            "check_images decodes images with Pillow, which is not installed: "
            "pip install pillow (or pip install kzoo[check])"
        )
    from kzoo.datacheck import factcache  # imports Pillow (through .inspection)

    splits = _split_names(folders)
    findings: list[Finding] = []
    images: list[_Image] = []
    labels: dict[str, list[str]] = {}
    decoded = 0
    for path, split in zip(folders, splits, strict=True):
        classes, files, skipped = _walk(path)
        labels[split] = classes
        if not classes:
            findings.append(_finding("no_classes", f"{path} has no class sub-folders", [path]))
        elif _nested_splits(path, classes, files):
            findings.append(
                _finding(
                    "nested_splits",
                    f"the folders {', '.join(classes)} of {path} hold no image of their own but "
                    "the same class folders: they look like splits, and the loader would take "
                    "them for classes. Check each of them as a folder of its own",
                    [path],
                )
            )
        if skipped and not quick:
            findings.append(
                _finding(
                    "skipped",
                    f"{len(skipped):,} files not checked: their names end in no image suffix",
                    skipped,
                )
            )
        cached = factcache.load_facts(path, cache_dir) if cache else {}
        facts, misses = {}, []
        for relative, _ in files:
            entry = cached.get(relative)
            try:
                st = os.stat(os.path.join(path, relative))
            except OSError:
                st = None  # vanished or unreadable: the inspection says which
            if st and entry and (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns):
                facts[relative] = entry
            else:
                misses.append(relative)
        full = [os.path.join(path, m) for m in misses]
        facts.update(zip(misses, _inspect(full, workers, progress, split), strict=True))
        decoded += len(misses)
        if cache and (misses or set(cached) - set(facts)):
            factcache.save_facts(path, facts, cache_dir)
        images += [
            _Image(os.path.join(path, relative), split, label, facts[relative])
            for relative, label in files
        ]

    findings += _file_findings(images, quick, min_side)
    readable = [image for image in images if not image.facts.error]
    findings += _duplicate_findings(readable, near_threshold, quick)
    per_label = Counter((i.split, i.label) for i in readable)
    counts = {
        split: {label: per_label[split, label] for label in labels[split]} for split in splits
    }
    if not quick:
        findings += _class_findings(counts, labels, imbalance, folders, splits)
    order = {kind: index for index, kind in enumerate(KINDS)}
    severity = {"error": 0, "warning": 1, "info": 2}
    findings = [f for f in findings if not quick or f.kind in QUICK_KINDS]
    findings.sort(key=lambda f: (severity[f.severity], order[f.kind], f.paths))
    log.info(
        "checked %d image files (%d decoded), %d findings", len(images), decoded, len(findings)
    )
    return DataReport(
        folders=tuple(str(f) for f in folders),
        splits=tuple(splits),
        counts=counts,
        findings=findings,
        files=len(images),
        decoded=decoded,
        quick=quick,
        settings={
            "near_threshold": near_threshold,
            "min_side": _min_side(readable, min_side),
            "imbalance": imbalance,
        },
    )


def _check_arguments(
    folders: Sequence[Path],
    workers: int | None,
    near_threshold: float,
    min_side: int | None,
    imbalance: float,
) -> None:
    for path in folders:
        if not path.is_dir():
            raise ValueError(
                f"each folder to check must be a folder of class sub-folders. Received: {path}"
            )
    real = [os.path.realpath(p) for p in folders]
    if len(set(real)) != len(real):
        raise ValueError(f"a folder is given twice. Received: {[str(p) for p in folders]}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1 (or None). Received: workers={workers}")
    if not 0.0 < near_threshold <= 1.0:
        raise ValueError(f"near_threshold must be in (0, 1]. Received: {near_threshold}")
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be at least 1 (or None). Received: {min_side}")
    if imbalance < 1.0:
        raise ValueError(f"imbalance must be at least 1. Received: imbalance={imbalance}")


def _split_names(folders: Sequence[Path]) -> list[str]:
    names = [p.resolve().name or str(p) for p in folders]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in folders]  # two 'train' folders: their paths tell them apart


def _walk(folder: Path) -> tuple[list[str], list[tuple[str, str]], list[Path]]:
    """Class names, ``(relative path, class)`` of each image file, and the other files."""
    from kzoo.datacheck.inspection import IMAGE_SUFFIXES  # imports Pillow

    classes, files, skipped = [], [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            skipped.append(Path(entry.path))  # the loader reads class folders only
            continue
        classes.append(entry.name)
        for root, dirs, names in os.walk(entry.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                    files.append((os.path.relpath(os.path.join(root, name), folder), entry.name))
                else:
                    skipped.append(Path(root) / name)
    return classes, files, skipped


def _nested_splits(folder: Path, classes: Sequence[str], files: Sequence[tuple[str, str]]) -> bool:
    """Whether the "classes" look like splits: no image of their own, the same sub-folders."""
    if len(classes) < 2 or any(os.sep not in relative for relative, _ in files):
        return False
    inner = [
        {e.name for e in os.scandir(folder / c) if e.is_dir() and not e.name.startswith(".")}
        for c in classes
    ]
    return len(set.intersection(*inner)) >= 2


def _inspect(paths: list[str], workers: int | None, progress: bool, split: str) -> list:
    from kzoo.datacheck.inspection import inspect_files  # imports Pillow

    if not paths:
        return []
    workers = workers or os.cpu_count() or 1
    start_method = _start_method()
    bar = _Progress(total=len(paths), desc=f"checking {split}", unit="file", disable=not progress)
    with bar:
        if workers == 1 or len(paths) < _IN_PROCESS_BELOW:
            results = []
            for start in range(0, len(paths), 256):
                results += inspect_files(paths[start : start + 256])
                bar.update(len(paths[start : start + 256]))
            return results
        # small chunks balance the load; large ones keep the pickling overhead low
        size = max(8, min(256, len(paths) // (workers * 8)))
        chunks = [paths[start : start + size] for start in range(0, len(paths), size)]
        context = multiprocessing.get_context(start_method)
        results = []
        try:
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                for chunk in pool.map(inspect_files, chunks):
                    results += chunk
                    bar.update(len(chunk))
        except concurrent.futures.process.BrokenProcessPool as error:
            raise KzooError(
                f"the {workers} decoding processes stopped before the end ({error}). A script "
                'that calls check_images must do so under `if __name__ == "__main__":` '
                "(processes are started afresh and import it); or pass workers=1"
            ) from error
        return results


def _start_method() -> str:
    """Fork where it is safe (Linux, no other thread): no start-up cost, no main-module rule.

    A fork copies locks that other threads hold (TensorFlow's, JAX's thread pools), so with
    threads about, and on macOS and Windows, workers start afresh instead.
    """
    if not sys.platform.startswith("linux"):
        return "spawn"
    threaded = threading.active_count() > 1 or any(m in sys.modules for m in _THREADED)
    return "forkserver" if threaded else "fork"


def _finding(kind: str, message: str, paths: Sequence[str | Path], **details) -> Finding:
    return Finding(kind, KINDS[kind][0], message, tuple(str(p) for p in paths), details)


def _min_side(readable: Sequence[_Image], min_side: int | None) -> int:
    if min_side is not None or not readable:
        return min_side or 1
    return max(1, int(np.median([min(i.facts.width, i.facts.height) for i in readable])) // 4)


def _file_findings(images: Sequence[_Image], quick: bool, min_side: int | None) -> list[Finding]:
    from kzoo.datacheck.inspection import FORMAT_SUFFIXES  # imports Pillow

    readable = [image for image in images if not image.facts.error]
    smallest = _min_side(readable, min_side)
    found = []
    for image in images:
        facts, path = image.facts, [image.path]
        if facts.error:
            found.append(_finding("undecodable", facts.error, path))
            continue
        if quick:
            continue
        suffix = os.path.splitext(image.path)[1].lower()
        if facts.format in FORMAT_SUFFIXES and suffix not in FORMAT_SUFFIXES[facts.format]:
            found.append(
                _finding(
                    "wrong_extension",
                    f"a {facts.format} file named {suffix}",
                    path,
                    format=facts.format,
                )
            )
        odd = _odd_mode(facts)
        if odd:
            found.append(_finding("mode", odd, path, mode=facts.mode, bits=facts.bits))
        if facts.orientation not in (0, 1):
            found.append(
                _finding(
                    "exif_rotation",
                    f"EXIF orientation {facts.orientation}: viewers turn it, Keras's loader "
                    "does not",
                    path,
                    orientation=facts.orientation,
                )
            )
        if min(facts.width, facts.height) < smallest:
            found.append(
                _finding(
                    "tiny",
                    f"{facts.width}x{facts.height} pixels, under the {smallest}-pixel side",
                    path,
                    width=facts.width,
                    height=facts.height,
                )
            )
    return found


def _odd_mode(facts) -> str:
    notes = []
    if facts.mode == "CMYK":
        notes.append("CMYK: colours change when converted to RGB")
    elif facts.mode == "P":
        notes.append("palette (P) colours")
    elif facts.mode not in _NORMAL_MODES and facts.bits <= 8 and not facts.alpha:
        notes.append(f"mode {facts.mode}")
    if facts.bits > 8:
        notes.append(f"{facts.bits}-bit samples (mode {facts.mode}): 8-bit loaders cut them")
    if facts.alpha:
        notes.append(f"transparency (mode {facts.mode}): the loader drops or keeps it")
    return "; ".join(notes)


def _duplicate_findings(
    readable: Sequence[_Image], near_threshold: float, quick: bool
) -> list[Finding]:
    """Identical files and near-identical images, as duplicates, conflicts or leaks."""
    found: list[Finding] = []
    if not readable:
        return found
    thumbs = np.stack([np.frombuffer(i.facts.thumb, np.uint8) for i in readable])
    vectors, blank = normalised(thumbs)
    if not quick:
        found += [
            _finding("blank", "one flat colour: nothing to learn from", [readable[i].path])
            for i in np.flatnonzero(blank)
        ]
    split_ids = {s: n for n, s in enumerate(dict.fromkeys(i.split for i in readable))}
    groups = np.array([split_ids[i.split] for i in readable]) if quick else None
    if quick and len(split_ids) == 1:
        near: list[tuple[int, int, float]] = []  # one split: nothing can leak
    else:
        near = similar_pairs(vectors, near_threshold, groups)
    by_digest: dict[str, list[int]] = defaultdict(list)
    for index, image in enumerate(readable):
        by_digest[image.facts.digest].append(index)
    exact_links = [(g[0], other) for g in by_digest.values() for other in g[1:]]
    groups_found = clusters(len(readable), [*exact_links, *((i, j) for i, j, _ in near)])
    group_of = {i: n for n, group in enumerate(groups_found) for i in group}
    lowest_of: dict[int, float] = {}
    for i, _, score in near:  # the weakest link of each group
        lowest_of[group_of[i]] = min(score, lowest_of.get(group_of[i], 1.0))
    for number, group in enumerate(groups_found):
        members = [readable[i] for i in group]
        exact = len({m.facts.digest for m in members}) == 1
        lowest = 1.0 if exact else round(lowest_of.get(number, 1.0), 4)
        what = "identical files" if exact else f"near-identical images (similarity >= {lowest:.4f})"
        paths = [m.path for m in members]
        splits = list(dict.fromkeys(m.split for m in members))
        classes = list(dict.fromkeys(m.label for m in members))
        details = {"exact": exact, "similarity": lowest, "splits": splits, "classes": classes}
        if len(splits) > 1:
            found.append(
                _finding("leak", f"{what} in splits {', '.join(splits)}", paths, **details)
            )
        if len(classes) > 1:
            found.append(
                _finding(
                    "conflicting_labels",
                    f"{what} in classes {', '.join(classes)}",
                    paths,
                    **details,
                )
            )
        if len(splits) == 1 and len(classes) == 1:
            found.append(_finding("duplicate", f"{what} in class {classes[0]}", paths, **details))
    return found


def _class_findings(
    counts: dict[str, dict[str, int]],
    labels: dict[str, list[str]],
    imbalance: float,
    folders: Sequence[Path],
    splits: Sequence[str],
) -> list[Finding]:
    found = []
    every = sorted({label for names in labels.values() for label in names})
    for folder, split in zip(folders, splits, strict=True):
        per_class = counts[split]
        missing = [label for label in every if label not in per_class]
        if missing:
            found.append(
                _finding(
                    "class_mismatch",
                    f"split {split} lacks class folder(s) {', '.join(missing)} that another "
                    "split has",
                    [folder],
                    missing=missing,
                )
            )
        for label, n in per_class.items():
            if n == 0:
                found.append(
                    _finding(
                        "empty_class", f"class {label} has no readable image", [folder / label]
                    )
                )
        present = {label: n for label, n in per_class.items() if n}
        if len(present) > 1:
            low, high = min(present.values()), max(present.values())
            if high > imbalance * low:
                found.append(
                    _finding(
                        "imbalance",
                        f"split {split}: the largest class has {high / low:.1f}x the images of "
                        f"the smallest ({high:,} against {low:,}; allowed {imbalance:g}x)",
                        [folder],
                        counts=dict(Counter(present).most_common()),
                    )
                )
    return found
