"""Moved: the converted-weights store is :mod:`kzoo.zoo.store` now.

It belongs to the zoo, which writes it into the cache; converters only turn files into arrays.
"""

raise ImportError(
    "kzoo.converters.store moved to kzoo.zoo.store: write "
    "`from kzoo.zoo.store import load_weights, read_meta, save_weights`."
)
