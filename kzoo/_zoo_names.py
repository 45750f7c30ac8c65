"""Names in the zoo: which model entry and weight source a name selects, and its class names.

``resolve("vgg19.tv_in1k")`` finds the manifest entries behind a load; ``class_names`` reads a
weight source's class list (a downloaded Keras class index, or the names embedded in a Lasagne
pickle). :mod:`kzoo.zoo` and the command line both use them; neither imports Keras.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from kzoo import cache
from kzoo._zoo_cache import fetch_raw
from kzoo.errors import ConversionError, KzooError
from kzoo.manifest import EMBEDDED_CLASSES, ManifestLike, ModelEntry, WeightSource, load_manifest

DEFAULT = "default"  # weights= value meaning "the model's default_weights"
# a local weights file's format, from its suffix (weights=path)
_SUFFIX_FORMAT = {
    ".h5": "keras_h5",
    ".hdf5": "keras_h5",
    ".caffemodel": "caffe",
    ".pkl": "lasagne",
    ".pickle": "lasagne",
    ".safetensors": "safetensors_vgg",
}


def resolve(
    name: str, weights: Any = DEFAULT, manifest: ManifestLike | None = None
) -> tuple[ModelEntry, WeightSource | None]:
    """The model entry and weight source that ``name`` and ``weights`` select.

    Returns:
        ``(entry, source)``; source is None for ``weights=None`` or a local file.
    """
    man = load_manifest(manifest)
    model_name, _, tag = name.partition(".")
    entry = man.model(model_name)
    if weights is None:
        return entry, None
    if isinstance(weights, os.PathLike) or (
        isinstance(weights, str)
        and weights != DEFAULT
        and weights not in entry.weights
        and (os.sep in weights or Path(weights).suffix in _SUFFIX_FORMAT)
    ):
        return entry, None
    if weights != DEFAULT and tag and weights != tag:
        raise ValueError(
            f"the name {name!r} already selects the weights {tag!r}. "
            f"Received: weights={weights!r}; pass one or the other"
        )
    tag = tag or (weights if weights != DEFAULT else entry.default_weights)
    if tag is None:
        return entry, None
    return entry, man.source(model_name, tag)


def class_names(
    weights: str = "vgg19.imagenet",
    manifest: ManifestLike | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[tuple[str, str]]:
    """The ``(wnid, name)`` of each class of a weight source, in output order."""
    man = load_manifest(manifest)
    _, source = resolve(weights, DEFAULT, man)
    if source is None or source.classes is None:
        raise KzooError(f"{weights!r} has no class names in the manifest")
    if source.classes == EMBEDDED_CLASSES:
        from kzoo.converters.lasagne import read_lasagne_metadata

        raw = fetch_raw(source, "top", cache_dir)
        words = read_lasagne_metadata(raw)["synset_words"]
        return [_split_synset(str(w)) for w in words]
    from kzoo import download

    entry = man.class_index(source.classes)
    rel = f"classes/{entry.name}/{entry.file.filename}"
    path = cache.find(rel, cache_dir, size=entry.file.size)
    if path is None:
        dest = cache.cache_root(cache_dir) / rel
        if not download.is_offline():
            dest = cache.writable_path(rel, cache_dir)
        path = download.fetch(
            list(entry.file.urls),
            dest,
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
