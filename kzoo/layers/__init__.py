"""kzoo's serializable Keras layers and initialisers.

Each one implements a piece of standard training advice so that it travels with a saved model:

* :class:`ImagePreprocessing` - the pretrained weights' own input preprocessing, in the graph,
  so users feed plain RGB 0-255 images and cannot pick the wrong convention
  (:mod:`.preprocessing`).
* :func:`fit_standardization` - zero-mean, unit-variance inputs, fitted on the training data;
  :class:`TargetStandardizer` - standardise regression targets and invert it in the model, so
  predictions come back in the target's units (:mod:`.standardization`).
* :class:`GaborInitializer` - start first-layer convolutions as a bank of oriented edge
  filters (:mod:`.initializers`).
* :class:`OneCycle` - the one-cycle learning-rate schedule, saved with the optimizer
  (:mod:`.schedules`).
* :class:`TemperatureScaling` - calibrated probabilities, a fitted temperature inside the
  model so that saved and exported files carry them (:mod:`.calibration`).

Everything is written with ``keras.ops`` and works on the TensorFlow, JAX and torch backends.
Importing this package registers every class with Keras; ``import kzoo`` arranges that as soon
as Keras is imported, so ``keras.saving.load_model`` finds them.
"""

from __future__ import annotations

from kzoo.layers.calibration import TemperatureScaling
from kzoo.layers.initializers import GaborInitializer, GaborParams
from kzoo.layers.preprocessing import MODES, ImagePreprocessing, preprocess_images
from kzoo.layers.schedules import OneCycle
from kzoo.layers.standardization import TargetStandardizer, fit_standardization

__all__ = [
    "MODES",
    "GaborInitializer",
    "GaborParams",
    "ImagePreprocessing",
    "OneCycle",
    "TargetStandardizer",
    "TemperatureScaling",
    "fit_standardization",
    "preprocess_images",
]
