"""The practitioner's loop around training: find a rate, train one cycle, study the errors,
calibrate.

* :func:`lr_find` - the learning-rate range test; the curve and a suggested rate, labelled
  with the rule that chose it (:mod:`.lr_finder`).
* :class:`MomentumCycle` - ``beta_1``/momentum cycled against :class:`kzoo.layers.OneCycle`
  (:mod:`.momentum`).
* :func:`balanced_class_weight` - class weights for imbalanced data (:mod:`.class_weights`).
* :func:`interpret` - confusion matrix, most confused pairs, per-class scores, top losses by
  file (:mod:`.interpretation`).
* :func:`predict_tta` - test-time augmentation (:mod:`.tta`).
* :func:`calibrate`, :func:`calibration_error` - temperature scaling and ECE
  (:mod:`.calibration`).

:mod:`kzoo.report` puts their results in one HTML page; :mod:`kzoo.plots` draws them.
"""

from __future__ import annotations

from kzoo.layers import OneCycle
from kzoo.loop.calibration import Calibration, calibrate, calibration_error, reliability
from kzoo.loop.class_weights import balanced_class_weight
from kzoo.loop.interpretation import Interpretation, TopLoss, interpret
from kzoo.loop.lr_finder import RULES, LRFinderResult, lr_find
from kzoo.loop.momentum import MomentumCycle
from kzoo.loop.tta import predict_tta

__all__ = [
    "RULES",
    "Calibration",
    "Interpretation",
    "LRFinderResult",
    "MomentumCycle",
    "OneCycle",
    "TopLoss",
    "balanced_class_weight",
    "calibrate",
    "calibration_error",
    "interpret",
    "lr_find",
    "predict_tta",
    "reliability",
]
