"""Class names of a weight source, in output order.

A source's class list is a Keras class index downloaded like any other file, or the names
embedded in its weights file (Lasagne's pickle). Pure Python.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from kzoo import download
from kzoo.converters.lasagne import read_lasagne_metadata
from kzoo.download import is_hub_id
from kzoo.errors import ConversionError, KzooError
from kzoo.zoo.entries import EMBEDDED_CLASSES
from kzoo.zoo.hub import hub_model
from kzoo.zoo.manifest import ManifestLike, load_manifest
from kzoo.zoo.names import DEFAULT, resolve
from kzoo.zoo.weights import fetch_raw

__all__ = ["class_names"]


def class_names(
    weights: str = "vgg19.imagenet",
    manifest: ManifestLike | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[tuple[str, str]]:
    """The ``(wnid, name)`` of each class of a weight source (or Hub id), in output order."""
    man = load_manifest(manifest)
    if is_hub_id(weights):  # the repo's label_names, numbered classes, or ImageNet-1k's
        found = hub_model(weights, cache_dir)
        if found.labels is not None:
            return list(found.labels)
        source = found.source
    else:
        _, source = resolve(weights, DEFAULT, man)
    if source is None or source.classes is None:
        raise KzooError(f"{weights!r} has no class names in the manifest")
    if source.classes == EMBEDDED_CLASSES:
        raw = fetch_raw(source, "top", cache_dir)
        words = read_lasagne_metadata(raw)["synset_words"]
        return [_split_synset(str(w)) for w in words]
    entry = man.class_index(source.classes)
    path = download.fetch_cached(
        f"classes/{entry.name}/{entry.file.filename}",
        list(entry.file.urls),
        root=cache_dir,
        size=entry.file.size,
        hashes=entry.file.hashes,
        progress=False,
        what=f"class names {entry.name}",
    )
    return list(_read_class_index(str(path), path.stat().st_mtime_ns))


@lru_cache(maxsize=8)
def _read_class_index(path: str, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
        return tuple(tuple(index[str(i)]) for i in range(len(index)))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConversionError(
            f"class index {path} is not a Keras class index ({{'0': [wnid, name], ...}}). "
            f"Received: {type(error).__name__}: {error}"
        ) from None


def _split_synset(words: str) -> tuple[str, str]:
    wnid, _, name = words.partition(" ")
    return (wnid, name) if name and wnid[:1] == "n" else ("", words)
