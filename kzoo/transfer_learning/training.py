"""Transfer learning in a few lines: cut a pretrained base, freeze it, add a DSL head, train twice.

>>> clf = kzoo.transfer("vgg19", head="GAP-FC256+D0.5-FC5", input_shape=(160, 160, 3))
>>> clf.fit(train_ds, validation_data=val_ds, frozen_epochs=3, fine_tune_epochs=5)
>>> clf.model.save("flowers.keras")

``clf.model`` is ``inputs -> [augmentation] -> base(x, training=False) -> head``. The base keeps
its in-graph preprocessing, so users feed RGB 0-255. Phase 1 trains the head with the base
frozen, on cached base features when that is provably equivalent; phase 2 unfreezes all or
part of the base and trains at a lower learning rate, pretrained layers lower still. Both
phases recompile with a fresh optimizer, so no stale ``trainable`` state is ever trained.

This module holds :func:`transfer` and :class:`Transfer`; the pieces they use live beside it:
:mod:`.parts` (the cut base, the head, defaults), :mod:`.caching` (when phase 1 may run on
cached features, and how), :mod:`.unfreeze` (which layers phase 2 trains) and :mod:`.rates`
(each phase's optimizer and its per-group learning rates).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kzoo.deploy import ExportResult, export
from kzoo.diagnostics import TrainingDiagnostics
from kzoo.errors import TransferError
from kzoo.layers import OneCycle
from kzoo.loop import LRFinderResult, MomentumCycle, balanced_class_weight, interpret, lr_find
from kzoo.report import write_report
from kzoo.taps import walk
from kzoo.transfer_learning.caching import (
    HEAD_STEPS_PER_EXECUTION,
    OnFullModel,
    can_cache,
    unpack_validation,
)
from kzoo.transfer_learning.feature_cache import (
    FeatureBatches,
    cached_features,
    feature_model,
    is_tf_dataset,
    split_head,
)
from kzoo.transfer_learning.feature_store import CachedFeatures, default_budget
from kzoo.transfer_learning.parts import (
    cut_base,
    default_loss,
    has_gpu,
    input_shape_of,
    resolve_base,
    resolve_head,
    weights_info,
)
from kzoo.transfer_learning.processes import (
    already_sharded,
    is_chief,
    local_rows,
    process_count,
    process_index,
)
from kzoo.transfer_learning.rates import check_template, group_optimizer, rates_of
from kzoo.transfer_learning.unfreeze import select_layers

__all__ = ["PhaseStop", "Transfer", "TransferHistory", "transfer"]

logger = logging.getLogger("kzoo")

BN_POLICIES = ("frozen", "train")
CACHE_CHOICES = ("auto", True, False, "disk")
SCHEDULES = (None, "one_cycle")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def transfer(
    base: str | keras.Model,
    head: str | keras.Model = "GAP-FC256+D0.5-FC5",
    *,
    cut: str | None = None,
    input_shape: Sequence[int] | None = None,
    weights: str | None = "default",
    bn: str = "frozen",
    cache_features: str | bool = "auto",
    feature_memory: int | None = None,
    precision: str | None = None,
    augmentation: keras.layers.Layer | Sequence[keras.layers.Layer] | None = None,
    optimizer: str | keras.optimizers.Optimizer = "adam",
    learning_rate: float = 1e-3,
    fine_tune_learning_rate: float | None = None,
    pretrained_lr_multiplier: float = 0.1,
    loss: Any = None,
    metrics: Sequence[Any] | None = None,
    manifest: Any = None,
    name: str | None = None,
) -> Transfer:
    """Cut a pretrained base, freeze it and put a new head from the DSL on top.

    Args:
        base: A zoo name (``"vgg19"``, loaded without its top and with its preprocessing
            layer), or any Keras model (a ``kzoo.load``-ed or ``kzoo.build``-ed one included).
        head: A DSL string built on the base's output shape with layer names prefixed
            ``head_`` (``"GAP-FC256+D0.5-FC5"``), or a Keras model taking the base's output.
        cut: The name of the last base layer to keep. Default: the head boundary (for a zoo
            name, the manifest's; for a Keras model, the layer before its first Flatten or
            global pooling, else before its trailing Dense/Dropout layers).
        input_shape: The image shape ``(H, W, C)``; any size works once the FC head is gone.
        weights: The zoo weights tag when ``base`` is a name: ``"default"`` for the one the
            name carries (``"vgg19.lasagne"``) or else the model's default, None for random
            weights.
        bn: ``"frozen"`` (default, the Keras guide's policy: the base runs with
            ``training=False``, so BatchNorm keeps its statistics in both phases) or
            ``"train"`` (fastai's: unfrozen BatchNorm layers update their statistics).
        cache_features: ``"auto"`` caches the base's output for the frozen phase where that
            is provably the same as running it every epoch, ``True`` insists (and refuses
            augmented inputs), ``"disk"`` insists and keeps the features in the kzoo cache,
            keyed by the base's layers and weights, the cut and the data, so the next run on
            the same data skips the base (``kzoo cache`` lists and prunes them); ``False``
            never caches. The cache holds what the head reads after its leading layers
            without weights (``GAP``, ``Flatten``, pooling): C floats per image for a
            ``GAP-...`` head.
        feature_memory: Bytes of RAM the cached features may take; past it they are
            written to a memory-mapped file and read from there. Default: a quarter of the
            memory available when the frozen phase starts.
        precision: ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"`` for the base;
            default mixed_bfloat16 on a GPU and float32 on a CPU. The head, softmax included,
            always computes in float32. A base given as a Keras model keeps the precision it
            was built with.
        augmentation: Random preprocessing layer(s) placed before the base, active only while
            training. Their presence turns feature caching off.
        optimizer: An optimizer name or a plain optimizer instance used as a template;
            every phase gets a fresh one built from it (kzoo adds loss scaling and the
            per-group split itself).
        learning_rate: Phase 1 (head) learning rate.
        fine_tune_learning_rate: Phase 2 learning rate of the new layers; default
            ``learning_rate / 10``.
        pretrained_lr_multiplier: Phase 2 learning rate of pretrained layers relative to the
            new ones (0.1: as in the talk's 3e-4 / 3e-5).
        loss: Default: sparse categorical cross-entropy for a softmax head, binary
            cross-entropy for a sigmoid one, mean squared error otherwise.
        metrics: Default ``["accuracy"]`` for classifiers.
        manifest: Passed to ``kzoo.load`` when ``base`` is a name.
        name: The combined model's name.

    Returns:
        A :class:`Transfer`; train it with ``fit`` or ``fit_frozen`` and ``fine_tune``.

    Raises:
        TransferError: A bad cut point, policy, precision or input shape.
    """
    _check_choice("bn", bn, BN_POLICIES)
    _check_choice("cache_features", cache_features, CACHE_CHOICES)
    if precision is not None:
        _check_choice("precision", precision, PRECISIONS)
    precision = precision or ("mixed_bfloat16" if has_gpu() else "float32")
    check_template(optimizer)  # before the base loads (a download, maybe)
    source = resolve_base(base, weights, input_shape, precision, manifest)
    base_model = cut_base(source, cut)
    feature_shape = tuple(base_model.output.shape[1:])
    head_model = resolve_head(head, feature_shape)
    clf = Transfer(
        base_model,
        head_model,
        input_shape=input_shape_of(base_model, input_shape),
        bn=bn,
        cache_features=cache_features,
        feature_memory=feature_memory,
        augmentation=augmentation,
        optimizer=optimizer,
        learning_rate=learning_rate,
        fine_tune_learning_rate=fine_tune_learning_rate,
        pretrained_lr_multiplier=pretrained_lr_multiplier,
        loss=loss,
        metrics=metrics,
        precision=precision,
        name=name,
    )
    clf.weights_info = weights_info(base, weights, manifest)
    return clf


@dataclass(frozen=True)
class PhaseStop:
    """Why a training phase ended before its last epoch.

    Attributes:
        phase: ``"frozen"`` or ``"fine_tune"``.
        epoch: The last epoch trained, counted from 1 over both phases.
        reason: The :class:`kzoo.diagnostics.Finding` kind (``"nan_loss"``,
            ``"chance_accuracy"``, ``"constant_predictions"``), or ``"callback"`` when one of
            the caller's callbacks (early stopping, ...) stopped it.
        message: What happened, in plain words, with the usual causes.
    """

    phase: str
    epoch: int
    reason: str
    message: str

    @property
    def by_diagnostics(self) -> bool:
        """Whether kzoo's training diagnostics, not a callback of the caller's, stopped it."""
        return self.reason != "callback"

    def __str__(self) -> str:
        return f"training stopped in the {self.phase} phase at epoch {self.epoch}: {self.message}"


class TransferHistory(keras.callbacks.History):
    """One History across both phases.

    Attributes:
        history: Metric name -> one value per epoch, both phases in order.
        epoch: The epoch indices.
        phase_boundary: The number of epochs trained before fine-tuning started (index of
            the first fine-tuning epoch in ``epoch``); None before any fine-tuning.
        phases: ``"frozen"`` or ``"fine_tune"`` per epoch.
        stopped: A :class:`PhaseStop` when a phase ended early (diagnostics or a callback),
            else None. A frozen phase that stopped is not followed by fine-tuning.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.phases: list[str] = []
        self.phase_boundary: int | None = None
        self.stopped: PhaseStop | None = None

    def _extend(self, phase: str, run: keras.callbacks.History) -> None:
        if phase == "fine_tune" and self.phase_boundary is None:
            self.phase_boundary = len(self.epoch)
        for key, values in run.history.items():
            column = self.history.setdefault(key, [math.nan] * len(self.epoch))
            column.extend(float(v) for v in values)
        self.epoch.extend(run.epoch)
        self.phases.extend([phase] * len(run.epoch))
        for column in self.history.values():  # metrics missing from this phase
            column.extend([math.nan] * (len(self.epoch) - len(column)))


class Transfer:
    """A frozen base and a new head, trained in two phases.

    Attributes:
        model: The combined Functional model, ``inputs -> base(x, training=False) -> head``;
            save it with ``model.save("name.keras")``.
        base: The cut, pretrained part (a Functional sub-model of ``model``).
        head: The new layers (a Functional sub-model of ``model``, layer names ``head_*``).
        history: The :class:`TransferHistory` of every phase run so far.
        class_names: The class names of the data trained on, when it carried them (a dataset
            from ``keras.utils.image_dataset_from_directory`` has ``class_names``), one per
            output unit; :meth:`export` puts them in the artifact. None otherwise.
    """

    def __init__(
        self,
        base: keras.Model,
        head: keras.Model,
        *,
        input_shape: tuple[int | None, ...],
        bn: str = "frozen",
        cache_features: str | bool = "auto",
        feature_memory: int | None = None,
        augmentation: keras.layers.Layer | Sequence[keras.layers.Layer] | None = None,
        optimizer: str | keras.optimizers.Optimizer = "adam",
        learning_rate: float = 1e-3,
        fine_tune_learning_rate: float | None = None,
        pretrained_lr_multiplier: float = 0.1,
        loss: Any = None,
        metrics: Sequence[Any] | None = None,
        precision: str = "float32",
        name: str | None = None,
    ) -> None:
        self.base, self.head, self.bn = base, head, bn
        self.cache_features = cache_features
        self.feature_memory = feature_memory
        check_template(optimizer)  # now, not at the first fit
        self.optimizer, self.learning_rate = optimizer, learning_rate
        self.fine_tune_learning_rate = fine_tune_learning_rate
        self.pretrained_lr_multiplier = pretrained_lr_multiplier
        self.precision = precision
        self.loss, self.metrics = default_loss(head, loss, metrics)
        self.history = TransferHistory()
        self.class_names: list[str] | None = None
        self.lr_finder: LRFinderResult | None = None  # the last lr_find, for the report
        self.weights_info: dict[str, Any] | None = None  # the zoo source, for the report
        self._schedule: str | None = None
        self._trained: keras.Model | None = None  # the model compiled last (full or head)
        self._strategy = _current_tf_strategy()
        if isinstance(augmentation, Sequence):
            augmentation = keras.Sequential(list(augmentation), name="augmentation")
        self.augmentation = augmentation
        inputs = keras.Input(input_shape, name="image")
        x = augmentation(inputs) if augmentation is not None else inputs
        # The Keras guide's training=False. Keras 3's Functional.call overrides it with the
        # outer model's flag, so _unfreeze() also keeps BatchNorm layers frozen (bn="frozen").
        x = base(x, training=False) if bn == "frozen" else base(x)
        self.model = keras.Model(inputs, head(x), name=name or f"{base.name}_transfer")
        self._freeze()

    # -- the two phases -------------------------------------------------------------------

    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        frozen_epochs: int = 3,
        fine_tune_epochs: int = 3,
        unfreeze: str | int = "all",
        schedule: str | None = None,
        class_weight: str | dict[int, float] | None = None,
        **kwargs: Any,
    ) -> TransferHistory:
        """Train the head with the base frozen, then fine-tune; see ``fit_frozen``/``fine_tune``.

        Args:
            x: Inputs (array, ``tf.data.Dataset`` of ``(x, y)``, generator, PyDataset).
            y: Targets when ``x`` is an array.
            frozen_epochs: Phase 1 epochs (0 skips it).
            fine_tune_epochs: Phase 2 epochs (0 skips it).
            unfreeze: Which part of the base phase 2 trains (see ``fine_tune``).
            schedule: ``"one_cycle"``: each phase's rate warms up then anneals
                (:class:`kzoo.OneCycle`, peak at the phase's rate, momentum cycled the other
                way); the fine-tune phase keeps its lower rate for pretrained layers. None:
                constant rates.
            class_weight: ``"balanced"``: weights from the training labels (one pass over a
                dataset), so that every class counts as much in the loss; or a dict, as Keras
                takes it.
            **kwargs: Passed to both phases (``validation_data``, ``batch_size``,
                ``callbacks``, ``verbose``, ``diagnostics``, other ``Model.fit`` arguments),
                except ``cache_features``/``head_batch_size`` (phase 1 only) and
                ``learning_rate``/``pretrained_lr_multiplier`` (phase 2 only).

        Returns:
            The history of both phases, with ``phase_boundary`` set, and ``stopped`` saying
            which phase ended early and why, if one did.
        """
        frozen_only = {
            k: kwargs.pop(k) for k in ("cache_features", "head_batch_size") if k in kwargs
        }
        tune_only = {
            k: kwargs.pop(k) for k in ("learning_rate", "pretrained_lr_multiplier") if k in kwargs
        }
        if class_weight is not None:
            kwargs["class_weight"] = self._class_weight(class_weight, x, y)
        kwargs["schedule"] = schedule
        if frozen_epochs:
            self.fit_frozen(x, y, epochs=frozen_epochs, **frozen_only, **kwargs)
            if self.history.stopped is not None:  # diagnostics or early stopping end the run
                logger.warning("%s Fine-tuning skipped.", self.history.stopped)
                return self.history
        if fine_tune_epochs:
            self.fine_tune(
                x, y, epochs=fine_tune_epochs, unfreeze=unfreeze, **tune_only, **kwargs
            )  # fmt: skip
        return self.history

    def fit_frozen(
        self,
        x: Any,
        y: Any = None,
        *,
        epochs: int = 3,
        validation_data: Any = None,
        batch_size: int | None = None,
        callbacks: Sequence[keras.callbacks.Callback] | None = None,
        cache_features: str | bool | None = None,
        head_batch_size: int | None = None,
        schedule: str | None = None,
        diagnostics: bool = True,
        verbose: Any = "auto",
        **fit_kwargs: Any,
    ) -> keras.callbacks.History:
        """Phase 1: train only the head, the base frozen.

        Args:
            x, y, validation_data, batch_size, callbacks, verbose, fit_kwargs: As for
                ``keras.Model.fit``.
            epochs: Epochs to train.
            cache_features: Overrides the ``transfer()`` setting for this call.
            head_batch_size: Batch size for the head on cached features (default
                ``batch_size``: the same updates as without caching; larger is faster).
            schedule: ``"one_cycle"`` or None (see ``fit``).
            diagnostics: Attach ``kzoo.TrainingDiagnostics``.

        Returns:
            This phase's ``History``.
        """
        _check_choice("schedule", schedule, SCHEDULES)
        self._freeze()
        self._note_class_names(x)
        setting = self.cache_features if cache_features is None else cache_features
        _check_choice("cache_features", setting, CACHE_CHOICES)
        callbacks, watch = _with_diagnostics(callbacks, diagnostics)
        offset = len(self.history.epoch)
        args = {"epochs": offset + epochs, "initial_epoch": offset, "verbose": verbose}
        seen = len(watch.findings) if watch else 0
        self._schedule = schedule
        with self._scope():
            if can_cache(self.base, self.augmentation, x, validation_data, setting, fit_kwargs):
                run = self._fit_cached(
                    x, y, validation_data, batch_size, head_batch_size, callbacks, args,
                    fit_kwargs, keep=setting == "disk",
                )  # fmt: skip
            else:
                cycle = self._cycle(self.learning_rate, epochs, x, batch_size, fit_kwargs)
                callbacks = self._compile(self.model, self.learning_rate, cycle=cycle) + callbacks
                run = self._fit_full(
                    x, y, validation_data, batch_size, callbacks, args, fit_kwargs
                )  # fmt: skip
        self.history._extend("frozen", run)
        self._note_stop("frozen", epochs, run, watch, seen)
        return run

    def fine_tune(
        self,
        x: Any,
        y: Any = None,
        *,
        epochs: int = 3,
        unfreeze: str | int = "all",
        learning_rate: float | None = None,
        pretrained_lr_multiplier: float | None = None,
        validation_data: Any = None,
        batch_size: int | None = None,
        callbacks: Sequence[keras.callbacks.Callback] | None = None,
        schedule: str | None = None,
        diagnostics: bool = True,
        verbose: Any = "auto",
        **fit_kwargs: Any,
    ) -> keras.callbacks.History:
        """Phase 2: unfreeze part of the base and train everything at a lower learning rate.

        Args:
            x, y, validation_data, batch_size, callbacks, verbose, fit_kwargs: As for
                ``keras.Model.fit``.
            epochs: Epochs to train.
            unfreeze: ``"all"``; an int N, the top N blocks (``block5``, ``block4``, ...; a
                weighted layer counts as a block when names carry no ``blockN_`` prefix); or
                a layer name: that layer and every layer after it.
            learning_rate: The new layers' rate; default ``fine_tune_learning_rate``, else a
                tenth of the phase 1 rate.
            pretrained_lr_multiplier: Pretrained layers' rate relative to ``learning_rate``.
            schedule: ``"one_cycle"`` or None (see ``fit``); with one-cycle both groups'
                rates follow the cycle, the pretrained one scaled down.
            diagnostics: Attach ``kzoo.TrainingDiagnostics``.

        Returns:
            This phase's ``History``.
        """
        _check_choice("schedule", schedule, SCHEDULES)
        selected = self._unfreeze(unfreeze)
        self._note_class_names(x)
        lr = next(
            rate
            for rate in (learning_rate, self.fine_tune_learning_rate, self.learning_rate / 10)
            if rate is not None
        )
        ratio = self.pretrained_lr_multiplier
        ratio = ratio if pretrained_lr_multiplier is None else pretrained_lr_multiplier
        logger.info(
            "fine-tuning %d base layers at learning rate %g (pretrained: %g)",
            len(selected), lr, lr * ratio,
        )  # fmt: skip
        offset = len(self.history.epoch)
        callbacks, watch = _with_diagnostics(callbacks, diagnostics)
        seen = len(watch.findings) if watch else 0
        with self._scope():
            cycle = schedule and self._cycle(lr, epochs, x, batch_size, fit_kwargs, schedule)
            pretrained = self.base.trainable_variables
            callbacks = self._compile(self.model, lr, pretrained, ratio, cycle=cycle) + callbacks
            args = {"epochs": offset + epochs, "initial_epoch": offset, "verbose": verbose}
            run = self._fit_full(x, y, validation_data, batch_size, callbacks, args, fit_kwargs)
        self.history._extend("fine_tune", run)
        self._note_stop("fine_tune", epochs, run, watch, seen)
        return run

    def _note_stop(
        self,
        phase: str,
        epochs: int,
        run: keras.callbacks.History,
        watch: TrainingDiagnostics | None,
        seen: int,
    ) -> None:
        """Record in the history why ``phase`` stopped, if something stopped it.

        Diagnostics in ``"stop"`` mode stop a phase even on its last epoch (the next phase
        must not start on a broken model); a callback's stop counts when epochs were left.
        """
        epoch = len(self.history.epoch)
        found = watch.findings[seen:] if watch is not None and watch.on_problem == "stop" else []
        if found:
            stop = PhaseStop(phase, epoch, found[0].kind, found[0].message)
        elif len(run.epoch) < epochs:
            stop = PhaseStop(phase, epoch, "callback", "a callback stopped training")
        else:
            return
        self.history.stopped = stop

    def export(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        *,
        class_names: Sequence[str] | None = None,
        verify: bool = True,
        samples: int = 16,
        tolerance: float = 1e-5,
        seed: int = 0,
    ) -> ExportResult | None:
        """Export :attr:`model` for serving, verified in its runtime; see :func:`kzoo.export`.

        With several processes only process 0 writes the artifact; the others return None.

        Args:
            path: Where to write (the suffix picks the format when ``format`` is None:
                ``.onnx``, ``.tflite``, ``.xml``, else a SavedModel folder).
            format: ``"tf_saved_model"``, ``"onnx"``, ``"litert"`` or ``"openvino"``.
            class_names: The classes, in output order, carried inside the artifact (or
                beside it, for LiteRT); default :attr:`class_names`, the training data's.
            verify: Reload the artifact in its runtime and compare it with Keras.
            samples: How many RGB 0-255 sample images the comparison uses.
            tolerance: The largest relative difference accepted.
            seed: Seed of the sample images.

        Returns:
            The :class:`kzoo.deploy.ExportResult`.

        Raises:
            ExportError: The artifact cannot be written, or computes otherwise than Keras.
        """
        if not is_chief():
            logger.info("process %d leaves the export to process 0", process_index())
            return None
        names = self.class_names if class_names is None else class_names
        return export(
            self.model, path, format, class_names=names, verify=verify, samples=samples,
            tolerance=tolerance, seed=seed,
        )  # fmt: skip

    def lr_find(
        self,
        x: Any,
        y: Any = None,
        *,
        phase: str = "frozen",
        unfreeze: str | int = "all",
        **kwargs: Any,
    ) -> LRFinderResult:
        """The learning-rate range test for one phase; the model is left as it was.

        Args:
            x, y: Training data, as for ``fit``.
            phase: ``"frozen"`` (the head's rate, the base frozen) or ``"fine_tune"`` (the
                new layers' rate with ``unfreeze`` unfrozen; the pretrained group follows at
                ``pretrained_lr_multiplier`` times it).
            unfreeze: For the fine-tune phase, as in ``fine_tune``.
            **kwargs: Passed to :func:`kzoo.lr_find` (``steps``, ``batch_size``, ``rule``, ...).

        Returns:
            The :class:`kzoo.loop.LRFinderResult` (also kept for :meth:`report`); use its
            ``suggestion`` as ``learning_rate`` or ``fine_tune_learning_rate``.
        """
        _check_choice("phase", phase, ("frozen", "fine_tune"))
        with self._scope():
            if phase == "frozen":
                self._freeze()
                self._compile(self.model, self.learning_rate)
            else:
                self._unfreeze(unfreeze)
                pretrained = self.base.trainable_variables
                rate = self.fine_tune_learning_rate or self.learning_rate / 10
                self._compile(self.model, rate, pretrained, self.pretrained_lr_multiplier)
            self.lr_finder = lr_find(self.model, x, y, **kwargs)
        self._freeze()
        return self.lr_finder

    def report(
        self,
        path: str | os.PathLike[str],
        validation_data: Any = None,
        *,
        calibration: Any = None,
        data_check: Any = None,
        title: str | None = None,
    ) -> Path | None:
        """Write the run's report: one self-contained HTML page (see :func:`kzoo.report`).

        It holds the learning curves with the phase boundary, the last :meth:`lr_find`
        curve, and, given validation data, the confusion matrix, per-class scores and top
        losses with saliency; the calibration and the data check when given; and the
        weights' source, hash and licence when the base came from the zoo.

        Args:
            path: The ``.html`` file to write.
            validation_data: ``(x, y)``, a dataset or a folder of class sub-folders.
            calibration: What :func:`kzoo.calibrate` returned, or its ``.calibration``.
            data_check: :func:`kzoo.check_images`'s report.
            title: The page's heading (default: the model's name).

        Returns:
            The path written; None on a process other than 0 (with several processes).
        """
        if not is_chief():
            return None
        interpretation = None
        if validation_data is not None:
            names = self.class_names
            interpretation = interpret(self.model, validation_data, class_names=names)
        return write_report(
            path, title=title or f"{self.model.name}: transfer learning", history=self.history,
            lr_finder=self.lr_finder, interpretation=interpretation, calibration=calibration,
            data_check=data_check, weights_info=self.weights_info,
        )  # fmt: skip

    def _note_class_names(self, data: Any) -> None:
        """Keep the class names a dataset carries, when there is one per output unit."""
        names = getattr(data, "class_names", None)
        units = self.model.outputs[0].shape[-1]
        if (
            isinstance(names, Sequence)
            and not isinstance(names, str)
            and all(isinstance(n, str) for n in names)
            and (len(names) == units or (units == 1 and len(names) == 2))
        ):
            self.class_names = list(names)

    def learning_rates(self) -> dict[str, float]:
        """Variable path -> the learning rate the current optimizer applies to it."""
        model = self._trained
        if model is None:
            return {}
        return rates_of(model.optimizer, model.trainable_variables)

    def _fit_full(
        self, x, y, validation_data, batch_size, callbacks, args, kw
    ) -> keras.callbacks.History:
        """``self.model.fit``; with several processes, each feeds its share of the arrays."""
        self.model.stop_training = False
        count = process_count()
        if count == 1 or not _is_array_like(x) or x is None:
            return self.model.fit(
                x, y, validation_data=validation_data, batch_size=batch_size,
                callbacks=callbacks, **args, **_keep_order(x, kw),
            )  # fmt: skip
        batch = batch_size or 32
        shuffle = kw.pop("shuffle", True)
        train = CachedFeatures(x, y, kw.pop("sample_weight", None))
        feed = FeatureBatches(train, batch, shuffle=shuffle, processes=count)
        if validation_data is not None and _is_array_like(validation_data[0]):
            held_out = CachedFeatures(*validation_data)
            validation_data = FeatureBatches(held_out, batch, shuffle=False, processes=count)
        with already_sharded():
            return self.model.fit(
                feed, validation_data=validation_data, callbacks=callbacks, shuffle=False,
                **args, **kw,
            )  # fmt: skip

    def _fit_cached(
        self, x, y, validation_data, batch_size, head_batch_size, callbacks, args, kw, keep
    ) -> keras.callbacks.History:
        """Phase 1 on features computed once; the head's weights are the full model's.

        With several processes each one computes and trains on the features of its own share
        of every global batch (see :mod:`.processes`).
        """
        prefix, trainer = split_head(self.head)
        features = feature_model(self.base, prefix)
        budget = default_budget() if self.feature_memory is None else self.feature_memory
        predict_batch = max(batch_size or 32, 128)
        if "sample_weight" in kw:
            y = (y, kw.pop("sample_weight"))
        count = process_count()
        batch = head_batch_size or batch_size
        x, rows = self._share(x, batch, count)
        options = {"budget": budget, "keep": keep}
        train = cached_features(features, x, y, predict_batch, role="train", rows=rows, **options)
        # a dataset brings its own batching: keep it, so the head gets the same updates
        batch = (batch // count if batch else None) or train.batch_size or 32 // count
        validation = None
        if validation_data is not None:
            vx, vy = unpack_validation(validation_data)
            vx, vrows = self._share(vx, head_batch_size or batch_size, count)
            held_out = cached_features(
                features, vx, vy, predict_batch, role="validation", rows=vrows, **options
            )  # fmt: skip
            validation = FeatureBatches(held_out, batch, shuffle=False)
        # Several steps per call keep the tiny head from being overhead-bound (the updates are
        # the same); Keras' multi-step loop fails under tf.distribute, and its torch trainer
        # refuses steps_per_execution > 1, so one step per call there.
        steps = min(HEAD_STEPS_PER_EXECUTION, math.ceil(len(train) / batch))
        if self._strategy is not None or keras.backend.backend() == "torch":
            steps = 1
        feed = FeatureBatches(train, batch, shuffle=kw.pop("shuffle", _is_array_like(x)))
        cycle = None
        if self._schedule == "one_cycle":
            cycle = OneCycle(
                self.learning_rate, (args["epochs"] - args["initial_epoch"]) * len(feed)
            )
        callbacks = [OnFullModel(c, self.model) for c in callbacks]
        callbacks = self._compile(trainer, self.learning_rate, steps=steps, cycle=cycle) + callbacks
        self.model.stop_training = trainer.stop_training = False
        # FeatureBatches shuffles rows (where the caller's data would be shuffled) itself;
        # Keras's shuffle would reorder whole batches
        with already_sharded():
            run = trainer.fit(
                feed, validation_data=validation, callbacks=callbacks, shuffle=False, **args, **kw
            )  # fmt: skip
        # so that self.model.evaluate()/predict() work right after a cached phase
        self._compile(self.model, self.learning_rate)
        self.model.stop_training = trainer.stop_training  # compile() resets it
        return run

    @staticmethod
    def _share(x: Any, batch: int | None, count: int) -> tuple[Any, np.ndarray | None]:
        """This process's share of the data: ``(x, None)`` for one process; a dataset's shard
        (Keras's own sharding); or the whole arrays and the rows this process takes."""
        if count == 1 or x is None:
            return x, None
        if is_tf_dataset(x):
            return keras.distribution.distribution().distribute_dataset(x), None
        return x, local_rows(len(keras.tree.flatten(x)[0]), batch or 32)

    # -- freezing ------------------------------------------------------------------------

    def _freeze(self) -> None:
        self.base.trainable = False
        self.head.trainable = True

    def _unfreeze(self, unfreeze: str | int) -> list[str]:
        selected = select_layers(self.base, unfreeze)
        self.base.trainable = True  # sets every sub-layer; then re-freeze the rest
        for layer in self.base.layers:
            layer.trainable = layer.name in selected
        if self.bn == "frozen":
            # A Functional model passes its own `training` flag to every layer it calls, so
            # the recorded training=False does not survive fit(): a frozen BatchNorm (Keras 3
            # runs those in inference mode) is what keeps the statistics.
            for layer in walk(self.base):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        self.head.trainable = True
        return selected

    # -- compiling ------------------------------------------------------------------------

    def _compile(
        self,
        model: keras.Model,
        lr: float,
        pretrained: Sequence[keras.Variable] = (),
        ratio: float = 1.0,
        steps: int = 1,
        cycle: OneCycle | None = None,
    ) -> list[keras.callbacks.Callback]:
        """Compile ``model`` with a fresh optimizer; returns the callbacks its schedule needs."""
        ids = {id(v) for v in pretrained}
        others = [v for v in model.trainable_variables if id(v) not in ids]
        rate = lr if cycle is None else cycle
        optimizer = group_optimizer(self.optimizer, rate, list(pretrained), others, ratio)
        if self.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(
            optimizer=optimizer, loss=self.loss, metrics=self.metrics, steps_per_execution=steps
        )
        self._trained = model
        return [] if cycle is None else [MomentumCycle(cycle)]

    def _cycle(
        self, lr: float, epochs: int, x: Any, batch_size: int | None, kw: dict, schedule=None
    ) -> OneCycle | None:
        """The phase's one-cycle schedule over its optimizer steps, or None without one."""
        if (schedule or self._schedule) != "one_cycle":
            return None
        per_epoch = kw.get("steps_per_epoch") or _batches_per_epoch(x, batch_size)
        if per_epoch is None:
            raise TransferError(
                "schedule='one_cycle' needs the number of batches per epoch, and this data "
                "does not say it (a generator, or a dataset of unknown length); pass "
                "steps_per_epoch. Received: schedule='one_cycle'"
            )
        return OneCycle(lr, epochs * per_epoch)

    @staticmethod
    def _class_weight(class_weight: Any, x: Any, y: Any) -> dict[int, float]:
        if class_weight == "balanced":
            return balanced_class_weight(x if y is None else y)
        if isinstance(class_weight, dict):
            return class_weight
        raise TransferError(
            "class_weight must be 'balanced', a dict of class index -> weight, or None. "
            f"Received: class_weight={class_weight!r}"
        )

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        # Variables (optimizer slots included) must be created in the strategy they will be
        # used with, even when fit() is called outside the user's `with strategy.scope()`.
        if self._strategy is None:
            yield
            return
        with self._strategy.scope():
            yield


# -- callbacks, strategy, checks -----------------------------------------------------------


def _with_diagnostics(callbacks: Any, diagnostics: bool) -> tuple[list, TrainingDiagnostics | None]:
    """The callbacks, with kzoo's diagnostics added unless asked not to; and the diagnostics."""
    callbacks = list(callbacks or [])
    watch = next((c for c in callbacks if isinstance(c, TrainingDiagnostics)), None)
    if diagnostics and watch is None:
        watch = TrainingDiagnostics()
        callbacks.append(watch)
    return callbacks, watch


def _batches_per_epoch(x: Any, batch_size: int | None) -> int | None:
    """Batches in one pass over ``x`` (whole global batches with several processes)."""
    if is_tf_dataset(x):
        cardinality = int(x.cardinality())
        return cardinality if cardinality > 0 else None
    if _is_array_like(x) and x is not None:
        rows, batch = len(keras.tree.flatten(x)[0]), batch_size or 32
        return rows // batch if process_count() > 1 else math.ceil(rows / batch)
    return len(x) if isinstance(x, keras.utils.PyDataset) else None


def _is_array_like(x: Any) -> bool:
    return x is None or isinstance(x, np.ndarray | list | dict | tuple) or hasattr(x, "__array__")


def _keep_order(x: Any, fit_kwargs: dict) -> dict:
    """``fit`` arguments that leave a dataset's or generator's own order alone.

    Keras's ``shuffle=True`` default means nothing for those (and says so in a warning on
    every call): kzoo passes ``shuffle=False`` unless the caller chose.
    """
    if "shuffle" in fit_kwargs or _is_array_like(x):
        return fit_kwargs
    return {**fit_kwargs, "shuffle": False}


def _current_tf_strategy() -> Any:
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf.distribute.get_strategy() if tf.distribute.has_strategy() else None


def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if not any(value is c or (isinstance(c, str) and value == c) for c in choices):
        raise TransferError(
            f"{name} must be one of {', '.join(map(repr, choices))}. Received: {name}={value!r}"
        )
