"""Ship a trained model: export it for TF Serving, ONNX Runtime, LiteRT or OpenVINO, verified.

>>> result = export(clf.model, "flowers.onnx", class_names=["daisy", "rose", "tulip"])
>>> result.verification.max_relative_difference   # against Keras, on 16 RGB 0-255 images
>>> read_class_names("flowers.onnx")
['daisy', 'rose', 'tulip']

:func:`export` writes the artifact with Keras's exporters, in float32 whatever the training
dtype policy (:mod:`.float32`), carries the class names in the artifact's metadata or beside
it (:mod:`.writers`), loads it in its own runtime (:mod:`.runtimes`), compares it with Keras
(:mod:`.verification`), and only then moves it into place (:mod:`.exporting`). :mod:`.formats`
is the table of formats, backends and packages; :mod:`.requirements` imports the optional
ones. Converters and runtimes are the ``export`` extra; see docs/export.md.
"""

from __future__ import annotations

from kzoo.deploy.exporting import ExportResult, export, read_class_names
from kzoo.deploy.formats import FORMATS
from kzoo.deploy.verification import Verification, verify_export

__all__ = ["FORMATS", "ExportResult", "Verification", "export", "read_class_names", "verify_export"]
