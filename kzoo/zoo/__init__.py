"""Models by name: the manifest, the weights on disk, and ``load``.

>>> model = kzoo.load("vgg19")                      # Oxford weights, Keras's copy
>>> model = kzoo.load("vgg19.tv_in1k", include_top=False, input_shape=(160, 160, 3))
>>> kzoo.decode_predictions(model.predict(images))  # [[(wnid, name, score), ...], ...]

Modules, each importing only those above it:

* :mod:`.entries` - the parsed manifest (models, weight sources, files, class lists);
* :mod:`.schema` - the JSON form validated into entries; :mod:`.manifest` - loading and
  merging the built-in manifest, ``KZOO_MANIFEST`` and ``manifest=``;
* :mod:`.names` - which entries a name selects;
* :mod:`.store` - converted weights saved by layer name; :mod:`.weights` - raw files fetched,
  imported, verified and purged, and the plan that finds or makes a conversion;
* :mod:`.hub` - Hub ids (``hf://org/name``) as model entries, from the repo's config;
* :mod:`.classes` - class names; :mod:`.loader` - ``load`` and friends;
* :mod:`.extractor` - ``features``: a model of the outputs of layers inside a network.

The face imports each module on first use, so reading the manifest costs neither the
downloader nor h5py; Keras is imported only by the functions that build a model.
"""

from __future__ import annotations

from kzoo.lazy import lazy_exports

_EXPORTS = {
    "class_names": "kzoo.zoo.classes:class_names",
    "ClassIndexEntry": "kzoo.zoo.entries:ClassIndexEntry",
    "FileEntry": "kzoo.zoo.entries:FileEntry",
    "Manifest": "kzoo.zoo.entries:Manifest",
    "ModelEntry": "kzoo.zoo.entries:ModelEntry",
    "WeightSource": "kzoo.zoo.entries:WeightSource",
    "features": "kzoo.zoo.extractor:features",
    "fetch_hub": "kzoo.zoo.hub:fetch_hub",
    "hub_model": "kzoo.zoo.hub:hub_model",
    "parse_hub_id": "kzoo.download.hub:parse",
    "decode_predictions": "kzoo.zoo.loader:decode_predictions",
    "list_models": "kzoo.zoo.loader:list_models",
    "load": "kzoo.zoo.loader:load",
    "prepare_weights": "kzoo.zoo.loader:prepare_weights",
    "preprocess_input": "kzoo.zoo.loader:preprocess_input",
    "builtin_manifest_path": "kzoo.zoo.manifest:builtin_manifest_path",
    "load_manifest": "kzoo.zoo.manifest:load_manifest",
    "merge_manifests": "kzoo.zoo.manifest:merge_manifests",
    "DEFAULT": "kzoo.zoo.names:DEFAULT",
    "resolve": "kzoo.zoo.names:resolve",
    "source": "kzoo.zoo.names:source",
    "sources": "kzoo.zoo.names:sources",
    "ImportResult": "kzoo.zoo.weights:ImportResult",
    "VerifyResult": "kzoo.zoo.weights:VerifyResult",
    "cached_files": "kzoo.zoo.weights:cached_files",
    "fetch_raw": "kzoo.zoo.weights:fetch_raw",
    "fetch_weights": "kzoo.zoo.weights:fetch_weights",
    "import_weights": "kzoo.zoo.weights:import_weights",
    "purge": "kzoo.zoo.weights:purge",
    "raw_relpath": "kzoo.zoo.weights:raw_relpath",
    "source_path": "kzoo.zoo.weights:source_path",
    "verify_cached": "kzoo.zoo.weights:verify_cached",
    "weights_path": "kzoo.zoo.weights:weights_path",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
