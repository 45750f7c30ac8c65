"""``kzoo models``, ``kzoo weights ...`` and ``kzoo classify``: the zoo from a shell.

``kzoo models`` reads only the manifest (no Keras, no third-party import); the ``weights``
commands need the downloader but not Keras; ``classify`` imports Keras.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from kzoo.errors import KzooError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``models``, ``weights`` and ``classify``."""
    models = subparsers.add_parser("models", help="list the zoo's models")
    models.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'vgg1*'")
    models.add_argument("--pretrained", action="store_true", help="list model.tag weight sources")
    models.add_argument("-l", "--long", action="store_true", help="show details")
    models.add_argument("--manifest", help="a user manifest merged over the built-in one")
    models.set_defaults(func=_models)

    weights = subparsers.add_parser("weights", help="list, fetch, import, verify, purge weights")
    actions = weights.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help: str, func, target: str = "required") -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help)
        if target == "required":
            parser.add_argument("name", help="model or model.tag, e.g. vgg19 or vgg19.caffe")
            parser.add_argument("tag", nargs="?", help="weights tag (default: the model's)")
        elif target == "optional":
            parser.add_argument("name", nargs="?", help="model or model.tag (default: all)")
            parser.add_argument("tag", nargs="?", help="weights tag")
        parser.add_argument("--manifest", help="a user manifest merged over the built-in one")
        parser.add_argument("--cache-dir", help="cache root (default: KZOO_HOME)")
        parser.set_defaults(func=func)
        return parser

    action("list", "show every weight source and whether it is cached", _list, target="optional")
    fetch = action("fetch", "download and verify a source's file(s)", _fetch)
    fetch.add_argument("--notop", action="store_true", help="the file without the classifier")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp = actions.add_parser("import", help="verify and install a file you obtained yourself")
    imp.add_argument("name", help="model or model.tag")
    imp.add_argument("rest", nargs="+", metavar="[TAG] FILE", help="weights tag, then the file")
    imp.add_argument("--notop", action="store_true", help="the file is the notop variant")
    imp.add_argument("--manifest", help="a user manifest merged over the built-in one")
    imp.add_argument("--cache-dir", help="cache root (default: KZOO_HOME)")
    imp.set_defaults(func=_import)
    action("verify", "re-hash cached files against the manifest", _verify, target="optional")
    path = action("path", "print where a source's file is (or would be) cached", _path)
    path.add_argument("--notop", action="store_true", help="the file without the classifier")
    purge = action("purge", "delete cached raw and converted files", _purge, target="optional")
    purge.add_argument("--yes", action="store_true", help="really delete (else: dry run)")

    classify = subparsers.add_parser("classify", help="top-k classes of images")
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PIL reads)")
    classify.add_argument("--model", default="vgg19", help="zoo model or a saved .keras file")
    classify.add_argument("--weights", default=None, help="weights tag (default: the model's)")
    classify.add_argument("--top", type=int, default=5, help="how many classes per image")
    classify.add_argument("--labels", help="class names: a text file (one per line) or JSON")
    classify.add_argument("--manifest", help="a user manifest merged over the built-in one")
    classify.set_defaults(func=_classify)


# --- models ------------------------------------------------------------------------------


def _models(args: argparse.Namespace) -> int:
    from kzoo.manifest import load_manifest

    man = load_manifest(args.manifest)
    names = man.names(args.pattern, args.pretrained)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    for name in names:
        if not args.long:
            print(name)
        elif args.pretrained:
            model, tag = name.split(".", 1)
            s = man.source(model, tag)
            extra = "  import-only" if s.import_only else ""
            print(f"{name:24} {s.format:16} {s.preprocessing:6} {s.license or '-'}{extra}")
        else:
            entry = man.model(name)
            shape = "x".join(map(str, entry.input_shape))
            print(f"{name:12} {shape:12} {', '.join(entry.weights) or '-':32} {entry.description}")
    return 0


# --- weights -----------------------------------------------------------------------------


def _sources(args: argparse.Namespace, required: bool):
    """The (source, variant) pairs a weights command acts on."""
    from kzoo._zoo_names import resolve
    from kzoo.manifest import load_manifest

    man = load_manifest(args.manifest)
    if args.name is None:
        return [s for m in man.models.values() for s in m.weights.values()]
    model, _, tag = args.name.partition(".")
    if tag and args.tag and tag != args.tag:
        raise KzooError(f"two weights tags given: {tag!r} and {args.tag!r}")
    tag = tag or args.tag
    if tag is None and not required:
        return list(man.model(model).weights.values())
    _, source = resolve(model, tag or "default", man)
    if source is None:
        raise KzooError(
            f"{model} has no default weights; name a tag: {list(man.model(model).weights)}"
        )
    return [source]


def _list(args: argparse.Namespace) -> int:
    from kzoo import cache
    from kzoo.zoo import raw_relpath

    for source in _sources(args, required=False):
        for variant, file in source.files.items():
            found = cache.find(raw_relpath(source, variant), args.cache_dir, size=file.size)
            status = str(found) if found else ("import-only" if source.import_only else "-")
            pin = "pinned" if file.pinned else "unpinned"
            size = f"{file.size / 1e6:.0f} MB" if file.size is not None else "? MB"
            print(f"{source.qualified_name:20} {variant:5} {size:>7} {pin:8} {status}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from kzoo.zoo import fetch_raw

    (source,) = _sources(args, required=True)
    variant = "notop" if args.notop else "top"
    if variant not in source.files:
        raise KzooError(
            f"{source.qualified_name} has no notop file; load it with "
            "include_top=False and kzoo converts the conv layers of the top file"
        )
    progress = False if args.no_progress else None
    print(fetch_raw(source, variant, args.cache_dir, progress=progress))
    return 0


def _import(args: argparse.Namespace) -> int:
    from kzoo import cache, download
    from kzoo.zoo import raw_relpath

    if len(args.rest) > 2:
        raise KzooError(f"import takes NAME [TAG] FILE. Received: {' '.join(args.rest)}")
    args.tag = args.rest[0] if len(args.rest) == 2 else None
    file = Path(args.rest[-1]).expanduser()
    (source,) = _sources(args, required=True)
    variant = "notop" if args.notop else "top"
    entry = source.files.get(variant)
    if entry is None:
        raise KzooError(f"{source.qualified_name} has no {variant} file in the manifest")
    if not file.is_file():
        raise KzooError(f"no such file: {file}")
    if entry.size is not None and file.stat().st_size != entry.size:
        raise KzooError(
            f"{file} is not {source.qualified_name} ({variant}): expected {entry.size} bytes. "
            f"Received: {file.stat().st_size} bytes"
        )
    pinned = {alg: value for alg, value in entry.hashes.items() if value}
    if pinned:
        download.verify(file, pinned)
    else:
        print(
            f"warning: {source.qualified_name} has no pinned hash; recording its sha256",
            file=sys.stderr,
        )
    dest = cache.writable_path(raw_relpath(source, variant), args.cache_dir)
    digest = download.file_digest(file, "sha256")
    with cache.atomic_write(dest) as tmp:
        shutil.copyfile(file, tmp)
    if not pinned:
        with cache.atomic_write(dest.with_name(dest.name + ".sha256")) as tmp:
            tmp.write_text(digest + "\n")
    print(dest)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from kzoo import cache, download
    from kzoo.zoo import raw_relpath

    failures = checked = 0
    for source in _sources(args, required=False):
        for variant, file in source.files.items():
            found = cache.find(raw_relpath(source, variant), args.cache_dir)
            if found is None:
                continue
            checked += 1
            try:
                download.verify(found, file.hashes, size=file.size)
                print(f"ok      {source.qualified_name} {variant} {found}")
            except KzooError as error:
                failures += 1
                print(f"FAILED  {source.qualified_name} {variant}: {error}")
    if not checked:
        print("nothing cached to verify", file=sys.stderr)
    return 1 if failures else 0


def _path(args: argparse.Namespace) -> int:
    from kzoo import cache
    from kzoo.zoo import raw_relpath

    (source,) = _sources(args, required=True)
    variant = "notop" if args.notop and "notop" in source.files else "top"
    rel = raw_relpath(source, variant)
    print(cache.find(rel, args.cache_dir) or cache.cache_root(args.cache_dir) / rel)
    return 0


def _purge(args: argparse.Namespace) -> int:
    from kzoo import cache

    root = cache.cache_root(args.cache_dir)
    folders = sorted(
        {
            root / kind / s.model / s.tag
            for s in _sources(args, required=False)
            for kind in ("raw", "converted")
        }
    )
    targets = [
        p for folder in folders if folder.is_dir() for p in sorted(folder.rglob("*")) if p.is_file()
    ]
    total = sum(p.stat().st_size for p in targets)
    for path in targets:
        print(("removing " if args.yes else "would remove ") + str(path))
    if not args.yes:
        print(f"{len(targets)} files, {total / 1e6:.1f} MB; pass --yes to delete them")
        return 0
    for folder in folders:
        if folder.is_dir():
            shutil.rmtree(folder)
    print(f"removed {len(targets)} files, {total / 1e6:.1f} MB")
    return 0


# --- classify ----------------------------------------------------------------------------


def _classify(args: argparse.Namespace) -> int:
    import numpy as np

    model, names = _classifier(args)
    height, width = (d or 224 for d in model.input_shape[1:3])
    images = np.stack([_read_image(Path(p), (width, height)) for p in args.images])
    scores = np.asarray(model.predict(images, verbose=0))
    for path, row in zip(args.images, scores, strict=True):
        print(path)
        for rank, i in enumerate(np.argsort(-row, kind="stable")[: args.top], start=1):
            wnid, name = names[i] if names and i < len(names) else ("", f"class {i}")
            print(f"  {rank}. {wnid + ' ' if wnid else ''}{name:32} {row[i]:.4f}")
    return 0


def _classifier(args: argparse.Namespace):
    """The model and its ``(wnid, name)`` class list (None when unknown)."""
    import kzoo
    from kzoo._zoo_names import class_names

    labels = _read_labels(Path(args.labels)) if args.labels else None
    if args.model.endswith(".keras") or os.path.sep in args.model:
        import keras

        model = keras.saving.load_model(args.model)
        if labels is None and args.weights:
            labels = class_names(args.weights, manifest=args.manifest)
        return model, labels
    name = f"{args.model}.{args.weights}" if args.weights else args.model
    model = kzoo.load(name, manifest=args.manifest)
    return model, labels or class_names(name, manifest=args.manifest)


def _read_labels(path: Path) -> list[tuple[str, str]]:
    import json

    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict):
            return [tuple(data[str(i)]) for i in range(len(data))]
        return [("", str(name)) for name in data]
    return [("", line.strip()) for line in text.splitlines() if line.strip()]


def _read_image(path: Path, size: tuple[int, int]):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    except (OSError, UnidentifiedImageError) as error:
        raise KzooError(f"cannot read image {path}: {error}") from None
    return np.asarray(rgb, dtype=np.float32)
