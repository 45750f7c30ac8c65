"""``kzoo models``, ``kzoo weights ...`` and ``kzoo classify``: the zoo from a shell.

Each handler asks :mod:`kzoo.zoo` and prints the answer; ``models`` and the ``weights``
commands never import Keras, ``classify`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kzoo import dsl, zoo
from kzoo.backend import require_backend
from kzoo.errors import KzooError
from kzoo.images import open_image
from kzoo.zoo.names import names_a_file

__all__ = [
    "check_model_name",
    "check_weights_on_disk",
    "run_classify",
    "run_fetch",
    "run_import",
    "run_list",
    "run_models",
    "run_path",
    "run_purge",
    "run_verify",
]


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]  # fmt: skip
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


# --- models ------------------------------------------------------------------------------


def run_models(args: argparse.Namespace) -> int:
    """List model names (or ``model.tag`` weight sources, or named architectures)."""
    if args.architectures:
        rows = [(name, spec) for name, spec in dsl.list_architectures().items()]
        print(_table(("architecture", "spec (build it: kzoo build NAME)"), rows))
        return 0
    man = zoo.load_manifest(args.manifest)
    names = man.names(args.pattern, args.pretrained)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    if not args.long:
        print("\n".join(names))
    elif args.pretrained:
        rows = []
        for name in names:
            model, tag = name.split(".", 1)
            s = man.source(model, tag)
            how = "import-only" if s.import_only else "download"
            rows.append((name, s.format, s.preprocessing, how, s.license or "not stated"))
        print(_table(("weights", "format", "input", "fetch", "license"), rows))
    else:
        rows = []
        for name in names:
            entry = man.model(name)
            shape = "x".join(map(str, entry.input_shape))
            tags = ", ".join(entry.weights) or "none"
            rows.append((name, shape, tags, entry.description))
        print(_table(("model", "input", "weights tags", "description"), rows))
    return 0


# --- weights -----------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    """Every file of the selected sources: size, whether a hash is pinned, where it is cached."""
    rows = []
    for cached in zoo.cached_files(_selected_sources(args), args.cache_dir):
        file, source = cached.file, cached.source
        if cached.path is not None:
            status = str(cached.path)
        else:
            status = "not cached (import-only)" if source.import_only else "not cached"
        size = f"{file.size / 1e6:.0f} MB" if file.size is not None else "unknown"
        pin = "pinned" if file.pinned else "unpinned"
        rows.append((source.qualified_name, cached.variant, size, pin, status))
    print(_table(("weights", "file", "size", "hash", "cached at"), rows))
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """Download and verify a source's file; print its path."""
    progress = False if args.no_progress else None
    if _is_hub_id(args.name):
        _no_tag_for_hub_ids(args)
        print(zoo.fetch_hub(args.name, cache_dir=args.cache_dir, progress=progress))
        return 0
    path = zoo.fetch_weights(
        args.name, args.tag, notop=args.notop, manifest=args.manifest, cache_dir=args.cache_dir,
        progress=progress,
    )  # fmt: skip
    print(path)
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Verify a file obtained elsewhere with its format's reader, then install it."""
    result = zoo.import_weights(
        args.name, args.file, tag=args.tag, notop=args.notop, manifest=args.manifest,
        cache_dir=args.cache_dir,
    )  # fmt: skip
    if not result.pinned:
        print(
            f"warning: the manifest pins no hash for this file; recorded its {result.digest} "
            "and later checks compare with it",
            file=sys.stderr,
        )
    print(
        f"checked: size, hash, {result.layers} layers read by the {result.format} reader",
        file=sys.stderr,
    )
    print(
        f"use it as {result.name}: --model {result.name} (classify, stylize), --base "
        f"{result.name} (transfer), kzoo.load({result.name!r})",
        file=sys.stderr,
    )
    print(result.path)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Re-hash cached files and read them with their format's reader; say what was checked."""
    results = zoo.verify_cached(_selected_sources(args), args.cache_dir)
    for result in results:
        cached = result.cached
        name = f"{cached.source.qualified_name} {cached.variant}"
        if result.error is None:
            print(f"ok      {name} ({result.checked}) {cached.path}")
        else:
            print(f"FAILED  {name} ({result.checked}): {result.error}")
    if not results:
        print("nothing cached to verify", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


def run_path(args: argparse.Namespace) -> int:
    """Print where a source's file is, or would be, cached."""
    if _is_hub_id(args.name):
        (source,) = _selected_sources(args)
        print(zoo.source_path(source, "top", args.cache_dir))
        return 0
    print(zoo.weights_path(args.name, args.tag, notop=args.notop, manifest=args.manifest,
                           cache_dir=args.cache_dir))  # fmt: skip
    return 0


def run_purge(args: argparse.Namespace) -> int:
    """List (or with --yes delete) the cached files of the selected sources."""
    sources = _selected_sources(args)
    targets = zoo.purge(sources, args.cache_dir, dry_run=True)
    total = sum(p.stat().st_size for p in targets)
    for path in targets:
        print(("removing " if args.yes else "would remove ") + str(path))
    if not args.yes:
        print(f"{len(targets)} files, {total / 1e6:.1f} MB; pass --yes to delete them")
        return 0
    zoo.purge(sources, args.cache_dir, dry_run=False)
    print(f"removed {len(targets)} files, {total / 1e6:.1f} MB")
    return 0


# --- classify ----------------------------------------------------------------------------


def run_classify(args: argparse.Namespace) -> int:
    """Print the top classes of each image; images and labels are read before the model."""
    import numpy as np

    labels = _read_labels(Path(args.labels)) if args.labels else None
    images = [open_image(p) for p in args.images]  # unreadable images fail here, first
    model, names = _classifier(args, labels)
    height, width = (d or 224 for d in model.input_shape[1:3])
    batch = np.stack([_resized(image, (width, height)) for image in images])
    scores = np.asarray(model.predict(batch, verbose=0))
    for path, row in zip(args.images, scores, strict=True):
        print(path)
        for rank, i in enumerate(np.argsort(-row, kind="stable")[: args.top], start=1):
            wnid, name = names[i] if names and i < len(names) else ("", f"class {i}")
            print(f"  {rank}. {wnid + ' ' if wnid else ''}{name:32} {row[i]:.4f}")
    return 0


def _classifier(args: argparse.Namespace, labels: list[tuple[str, str]] | None):
    """The model and its ``(wnid, name)`` class list (None when unknown)."""
    if names_a_file(args.model):
        import keras

        model = keras.saving.load_model(args.model)
        if labels is None and args.weights:
            labels = zoo.class_names(args.weights, manifest=args.manifest)
        return model, labels
    if _is_hub_id(args.model) and args.weights:
        raise KzooError(
            f"a Hub id carries its weights: drop --weights. Received: --model {args.model} "
            f"--weights {args.weights}"
        )
    name = f"{args.model}.{args.weights}" if args.weights else args.model
    model = zoo.load(name, manifest=args.manifest)
    return model, labels or zoo.class_names(name, manifest=args.manifest)


def _is_hub_id(name: str) -> bool:
    """Whether a command-line name is a Hub id (``hf://org/name``; spelled here so that the
    commands that never download do not import the downloader to ask)."""
    return name.strip().lower().startswith("hf://")


def _selected_sources(args: argparse.Namespace) -> list:
    """The weight sources ``NAME [TAG]`` selects; a Hub id's model read from its config (one
    HEAD online for a branch, none offline once seen)."""
    if args.name is not None and _is_hub_id(args.name):
        _no_tag_for_hub_ids(args)
        return [zoo.hub_model(args.name, args.cache_dir).source]
    return zoo.sources(args.name, args.tag, args.manifest)


def _no_tag_for_hub_ids(args: argparse.Namespace) -> None:
    if args.tag or getattr(args, "notop", False):
        raise KzooError(
            f"a Hub id names its file itself: 'hf://org/name[@rev]' (the model's weights) or "
            f"'hf://org/name@rev/FILE'; no tag, no --notop. Received: {args.name} {args.tag or ''}"
        )


def _read_labels(path: Path) -> list[tuple[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix != ".json":
            return [("", line.strip()) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
        if isinstance(data, dict):
            return [tuple(data[str(i)]) for i in range(len(data))]
        return [("", str(name)) for name in data]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise KzooError(
            f"cannot read class names from --labels {path}: {error}. Give a text file with one "
            'name per line, a JSON list, or a Keras class index {"0": [wnid, name], ...}'
        ) from None


def _resized(image, size: tuple[int, int]):
    import numpy as np
    from PIL import Image

    return np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


# --- checks that run before the handler (see commands.run_checks) --------------------------


def check_model_name(args: argparse.Namespace, attribute: str) -> None:
    """A zoo name in ``args.<attribute>`` must be known (a path to a saved model is not one)."""
    value = str(getattr(args, attribute))
    if names_a_file(value):
        return
    weights = getattr(args, "weights", None)
    if _is_hub_id(value):  # well formed now; the Hub is asked when the weights are fetched
        zoo.parse_hub_id(value)
        return
    if weights is None or weights.lower() == "none":
        weights = zoo.DEFAULT
    zoo.resolve(value, weights, getattr(args, "manifest", None))


def check_weights_on_disk(args: argparse.Namespace, attribute: str, include_top: bool) -> None:
    """The zoo weights ``args.<attribute>`` loads are on disk: fetched now, before Keras starts.

    Offline or with a dead mirror the command fails in about a second, and with no backend
    installed it says what to install before it downloads anything.
    """
    value = str(getattr(args, attribute))
    weights = getattr(args, "weights", None)
    if names_a_file(value):
        return
    if weights is not None and weights.lower() == "none":
        return  # random weights: nothing to fetch
    require_backend()
    zoo.prepare_weights(
        value, zoo.DEFAULT if weights is None else weights, include_top=include_top,
        manifest=getattr(args, "manifest", None),
    )  # fmt: skip
