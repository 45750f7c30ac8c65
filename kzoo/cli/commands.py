"""Every command and flag of ``kzoo``, and the checks that run before any of them does work.

Each sub-command names its handler as ``(module, function)`` inside this package; the module
is imported only when the command runs, so ``kzoo explain`` never imports Keras and ``kzoo
models`` never imports the downloader. A command's ``checks`` (files that must exist, values in
range) run first, before any download, model build or Keras import, so a wrong argument fails
in a moment with a message that says what to change. Imports nothing of kzoo but its errors.
"""

from __future__ import annotations

import argparse
import importlib.util
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from kzoo.errors import KzooError
from kzoo.images import open_image

__all__ = ["DEFAULT_HEAD", "make_parser", "parse_shape", "run_checks"]

DEFAULT_HEAD = "GAP-FC256+D0.5-FC{classes}"
Check = Callable[[argparse.Namespace], None] | tuple[str, ...]


def parse_shape(text: str) -> tuple[int, ...]:
    """``"160x160x3"`` -> ``(160, 160, 3)``, for ``--input-shape`` (argparse type)."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected positive integers joined by 'x' in Keras order, e.g. 224x224x3; got {text!r}"
        )
    return dims


# -- checks that run before the handler is imported ------------------------------------------


def _files(*attributes: str, optional: Sequence[str] = ()) -> Check:
    def check(args: argparse.Namespace) -> None:
        for attribute in (*attributes, *optional):
            values = getattr(args, attribute, None)
            for value in values if isinstance(values, list) else [values]:
                if value is None and attribute in optional:
                    continue
                path = Path(value).expanduser()
                if not path.is_file():
                    flag = "--" + attribute.replace("_", "-") if attribute in optional else ""
                    what = f"{flag} file" if flag else "file"
                    hint = "" if path.parent.is_dir() else f" (no folder {path.parent})"
                    raise KzooError(f"no such {what}: {path}{hint}")
                if path.suffix == ".keras" and not zipfile.is_zipfile(path):
                    raise KzooError(
                        f"{path} is not a saved Keras model: a .keras file is the zip archive "
                        "model.save() writes, and this one is not a zip archive (damaged, or "
                        "another format renamed)"
                    )

    return check


def _images(*attributes: str) -> Check:
    """Image files (not ``.npy`` arrays) must decode, before a model is loaded for them."""

    def check(args: argparse.Namespace) -> None:
        for attribute in attributes:
            values = getattr(args, attribute)
            for value in values if isinstance(values, list) else [values]:
                if Path(value).suffix.lower() != ".npy":
                    open_image(value)

    return check


def _saved_model(attribute: str) -> Check:
    def check(args: argparse.Namespace) -> None:
        value = str(getattr(args, attribute))
        if value.lower().startswith("hf://"):  # a Hub id (docs/zoo.md), not a path
            return
        if value.endswith(".keras") or "/" in value or "\\" in value:
            _files(attribute)(args)

    return check


def _transfer_options(args: argparse.Namespace) -> None:
    data, out = Path(args.data), Path(args.out)
    if not data.is_dir():
        raise KzooError(f"--data must be a folder of class sub-folders. Received: {data}")
    if out.suffix != ".keras":
        raise KzooError(f"--out must end in .keras. Received: {out}")
    if not 0.0 <= args.validation_split < 1.0:
        raise KzooError(f"--validation-split must be in [0, 1). Received: {args.validation_split}")
    text = args.input_shape
    try:
        args.input_shape = parse_shape(text)
    except argparse.ArgumentTypeError:
        args.input_shape = ()
    if len(args.input_shape) != 3:
        raise KzooError(f"--input-shape must look like 160x160x3. Received: {text!r}")
    if args.input_shape[2] not in (1, 3, 4):
        raise KzooError(
            f"images have 1, 3 or 4 channels. Received: --input-shape {args.input_shape}"
        )
    for flag in ("frozen_epochs", "fine_tune_epochs"):
        if getattr(args, flag) < 0:
            raise KzooError(f"--{flag.replace('_', '-')} must be 0 or more")
    if args.batch_size < 1:
        raise KzooError(f"--batch-size must be at least 1. Received: {args.batch_size}")
    if args.base.endswith(".keras"):
        _files("base")(args)
    if importlib.util.find_spec("tensorflow") is None:
        raise KzooError(
            "kzoo transfer reads the image folder with tf.data, which needs TensorFlow: "
            "pip install tensorflow (it works beside the jax or torch backend), or call "
            "kzoo.transfer from Python with arrays"
        )


def _positive_top(args: argparse.Namespace) -> None:
    if args.top < 1:
        raise KzooError(f"--top must be at least 1. Received: {args.top}")


def run_checks(args: argparse.Namespace) -> None:
    """Run the checks of the parsed command; raises KzooError on the first that fails.

    A check is a function, or ``(module, function, *arguments)`` naming one in a module of this
    package that reads pure-Python parts of kzoo (the DSL, the manifest): imported only when
    its command runs, like the handlers.
    """
    for check in getattr(args, "checks", ()):
        if isinstance(check, tuple):
            module, function, *arguments = check
            getattr(importlib.import_module(f"kzoo.cli.{module}"), function)(args, *arguments)
        else:
            check(args)


# -- the parser -------------------------------------------------------------------------------


def _command(
    subparsers: argparse._SubParsersAction,
    name: str,
    handler: tuple[str, str],
    *,
    checks: Sequence[Check] = (),
    **kwargs,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, **kwargs)
    parser.set_defaults(handler=handler, checks=tuple(checks))
    return parser


def _spec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "spec", help="architecture string, e.g. '28x28x1:20C5-MP2-FC10', or a name like vgg19"
    )
    parser.add_argument(
        "--input-shape", type=parse_shape, metavar="HxWxC", help="input shape, e.g. 224x224x3"
    )
    parser.add_argument(
        "--dialect",
        choices=("keras", "ciresan"),
        help="'ciresan': valid convolutions, as the literature means them",
    )
    parser.add_argument("--padding", choices=("same", "valid"), default="same")


def _add_dsl(subparsers: argparse._SubParsersAction) -> None:
    explain = _command(
        subparsers,
        "explain",
        ("dsl", "run_explain"),
        help="per-layer output shapes and parameter counts of an architecture string",
        description="Print each layer's name, output shape and parameters (no Keras needed).",
    )
    _spec_options(explain)
    build = _command(
        subparsers,
        "build",
        ("build", "run_build"),
        checks=(("dsl", "check_spec"),),
        help="build a Keras model from an architecture string",
        description="Build the model, print its canonical string, optionally save it.",
    )
    _spec_options(build)
    build.add_argument("--summary", action="store_true", help="print Keras's model summary")
    build.add_argument("--save", metavar="PATH", help="save the model, e.g. model.keras")


def _add_zoo(subparsers: argparse._SubParsersAction) -> None:
    models = _command(subparsers, "models", ("zoo", "run_models"), help="list the zoo's models")
    models.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'vgg1*'")
    models.add_argument("--pretrained", action="store_true", help="list model.tag weight sources")
    models.add_argument("-l", "--long", action="store_true", help="show details")
    models.add_argument("--manifest", help="a user manifest merged over the built-in one")
    models.add_argument(
        "--architectures", action="store_true", help="list the named architectures instead"
    )

    weights = subparsers.add_parser("weights", help="list, fetch, import, verify, purge weights")
    actions = weights.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help: str, handler: str, target: str = "required"):
        parser = _command(actions, name, ("zoo", handler), help=help)
        if target == "required":
            parser.add_argument(
                "name", help="model, model.tag or Hub id: vgg19, vgg19.caffe, hf://org/name"
            )
            parser.add_argument("tag", nargs="?", help="weights tag (default: the model's)")
        elif target == "optional":
            parser.add_argument(
                "name", nargs="?", help="model, model.tag or Hub id (default: every model)"
            )
            parser.add_argument("tag", nargs="?", help="weights tag")
        parser.add_argument("--manifest", help="a user manifest merged over the built-in one")
        parser.add_argument("--cache-dir", help="cache root (default: KZOO_HOME)")
        return parser

    action("list", "show every weight source and whether it is cached", "run_list", "optional")
    fetch = action("fetch", "download and verify a source's file(s)", "run_fetch")
    fetch.add_argument("--notop", action="store_true", help="the file without the classifier")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp = action(
        "import", "verify and install a file you obtained yourself", "run_import", "custom"
    )
    imp.add_argument("name", help="model or model.tag")
    imp.add_argument("rest", nargs="+", metavar="[TAG] FILE", help="weights tag, then the file")
    imp.add_argument("--notop", action="store_true", help="the file is the notop variant")
    imp.set_defaults(checks=(_import_arguments,))
    action("verify", "re-hash cached files against the manifest", "run_verify", "optional")
    path = action("path", "print where a source's file is (or would be) cached", "run_path")
    path.add_argument("--notop", action="store_true", help="the file without the classifier")
    purge = action("purge", "delete cached raw and converted files", "run_purge", "optional")
    purge.add_argument("--yes", action="store_true", help="really delete (else: dry run)")

    classify = _command(
        subparsers,
        "classify",
        ("zoo", "run_classify"),
        checks=(
            _files("images", optional=("labels",)),
            _images("images"),
            _saved_model("model"),
            _positive_top,
            ("zoo", "check_model_name", "model"),
            ("zoo", "check_weights_on_disk", "model", True),
        ),
        help="top-k classes of images",
    )
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PIL reads)")
    classify.add_argument(
        "--model", default="vgg19", help="zoo model, Hub id (hf://org/name) or a .keras file"
    )
    classify.add_argument("--weights", default=None, help="weights tag (default: the model's)")
    classify.add_argument("--top", type=int, default=5, help="how many classes per image")
    classify.add_argument("--labels", help="class names: a text file (one per line) or JSON")
    classify.add_argument("--manifest", help="a user manifest merged over the built-in one")


def _import_arguments(args: argparse.Namespace) -> None:
    if len(args.rest) > 2:
        raise KzooError(f"import takes NAME [TAG] FILE. Received: {' '.join(args.rest)}")
    args.tag = args.rest[0] if len(args.rest) == 2 else None
    args.file = args.rest[-1]
    _files("file")(args)


def _add_transfer(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(
        subparsers,
        "transfer",
        ("transfer", "run_transfer"),
        checks=(
            _transfer_options,
            ("zoo", "check_model_name", "base"),
            ("zoo", "check_weights_on_disk", "base", False),
        ),
        help="fine-tune a pretrained network on a folder of images (one sub-folder per class)",
        description="Freeze a pretrained base, train a new head, then fine-tune.",
    )
    parser.add_argument(
        "--base", default="vgg19", help="zoo model name, Hub id (hf://org/name) or a .keras file"
    )
    parser.add_argument("--data", required=True, help="folder with one sub-folder per class")
    parser.add_argument(
        "--head",
        default=DEFAULT_HEAD,
        help="DSL head; {classes} becomes the number of class folders (default: GAP-FC256+D0.5-"
        "FC{classes})",
    )
    parser.add_argument("--frozen-epochs", type=int, default=3, help="phase 1 epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=3, help="phase 2 epochs")
    parser.add_argument("--out", required=True, help="where to save the model (.keras)")
    parser.add_argument("--input-shape", default="224x224x3", help="HxWxC (default %(default)s)")
    parser.add_argument("--validation-split", type=float, default=0.2, help="0 for none")
    parser.add_argument(
        "--weights", default="default", help="weights tag or file; 'none' (default: the base's)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cut", help="last base layer to keep (default: the head boundary)")
    parser.add_argument("--unfreeze", default="all", help="'all', top N blocks, or a layer name")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="phase 1 rate")
    parser.add_argument("--fine-tune-learning-rate", type=float, help="default: a tenth")
    parser.add_argument("--bn", choices=("frozen", "train"), default="frozen")
    parser.add_argument(
        "--cache",
        choices=("auto", "yes", "no", "disk"),
        default="auto",
        help="cache the base's features in the frozen phase; 'disk' keeps them for the next "
        "run on the same data (see 'kzoo cache')",
    )
    parser.add_argument(
        "--feature-memory",
        type=_size,
        metavar="SIZE",
        help="RAM for cached features before they spill to disk, e.g. 4GiB (default: a "
        "quarter of the available memory)",
    )
    parser.add_argument(
        "--schedule",
        choices=("constant", "one_cycle"),
        default="constant",
        help="learning rate per phase: constant, or warm-up then cosine annealing",
    )
    parser.add_argument(
        "--class-weight",
        choices=("none", "balanced"),
        default="none",
        help="'balanced': weight classes by their inverse frequency in the training data",
    )
    parser.add_argument(
        "--report", metavar="PATH", help="write a self-contained HTML report, e.g. run.html"
    )
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16", "mixed_float16"))
    parser.add_argument("--seed", type=int, default=0, help="split and initialisation seed")
    parser.add_argument("--no-diagnostics", action="store_true", help="no training checks")
    parser.add_argument(
        "--no-check", action="store_true", help="skip the quick data check before training"
    )
    parser.add_argument("--manifest", help="a user manifest merged over the built-in one")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6}
_UNITS.update({"mib": 2**20, "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tib": 2**40})


def _size(text: str) -> int:
    """``"4GiB"`` -> bytes (argparse type): a number and an optional unit, B to TiB."""
    number = text.strip().rstrip("bBiIkKmMgGtT")
    unit = text.strip()[len(number) :].lower()
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if value < 0 or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected a size like 512MiB or 4GiB; got {text!r}")
    return int(value * _UNITS[unit])


def _add_cache(subparsers: argparse._SubParsersAction) -> None:
    cache = subparsers.add_parser(
        "cache",
        help="list or prune the base features kept by 'kzoo transfer --cache disk'",
        description="Features kept on disk by cache_features='disk', one folder per base, cut "
        "and data, under <kzoo cache>/features.",
    )
    actions = cache.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = _command(actions, "list", ("cache", "run_list"), help="show the kept features")
    prune = _command(actions, "prune", ("cache", "run_prune"), help="delete kept features")
    prune.add_argument(
        "--older-than", type=float, metavar="DAYS", help="only those unused for DAYS days"
    )
    prune.add_argument(
        "--keep", type=_size, metavar="SIZE", help="keep the most recently used up to SIZE"
    )
    prune.add_argument("--yes", action="store_true", help="really delete (else: dry run)")
    for parser in (listing, prune):
        parser.add_argument("--cache-dir", help="cache root (default: KZOO_HOME)")


def _add_plot(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot", help="draw kernels, feature maps, saliency or occlusion maps, training curves"
    )
    commands = parser.add_subparsers(dest="plot_command", metavar="WHAT", required=True)
    kernels = _command(
        commands,
        "kernels",
        ("plot", "run_kernels"),
        checks=(_files("model"),),
        help="the first conv layer's kernels as a grid",
    )
    kernels.add_argument("model", type=Path, help="a saved model (.keras)")
    kernels.add_argument("--layer", help="the conv layer to draw (default: the first Conv2D)")
    kernels.add_argument("--out", type=Path, default=Path("kernels.png"), help="PNG to write")

    saliency = _command(
        commands,
        "saliency",
        ("plot", "run_saliency"),
        checks=(_files("model", "image"), _images("image")),
        help="what the network looks at in an image",
    )
    saliency.add_argument("model", type=Path, help="a saved model (.keras)")
    saliency.add_argument("image", type=Path, help="an image file, or a .npy array")
    saliency.add_argument("--class", dest="class_index", type=int, help="class to explain")
    saliency.add_argument("--out", type=Path, default=Path("saliency.png"), help="PNG to write")

    features = _command(
        commands,
        "features",
        ("plot", "run_features"),
        checks=(_files("model", "image"), _images("image")),
        help="the feature maps of an image at one layer, as a grid",
    )
    features.add_argument("model", type=Path, help="a saved model (.keras)")
    features.add_argument("image", type=Path, help="an image file, or a .npy array")
    features.add_argument(
        "--layer", help="layer name or path, e.g. block3_conv4 (default: the first conv)"
    )
    features.add_argument("--maps", type=int, default=64, help="at most this many maps")
    features.add_argument("--out", type=Path, default=Path("features.png"), help="PNG to write")

    occlusion = _command(
        commands,
        "occlusion",
        ("plot", "run_occlusion"),
        checks=(_files("model", "image"), _images("image")),
        help="where the network looks: the class score as a grey patch slides over the image",
    )
    occlusion.add_argument("model", type=Path, help="a saved model (.keras)")
    occlusion.add_argument("image", type=Path, help="an image file, or a .npy array")
    occlusion.add_argument("--class", dest="class_index", type=int, help="class to explain")
    occlusion.add_argument(
        "--patch", type=int, help="patch side in pixels (default: 1/8 of the image)"
    )
    occlusion.add_argument(
        "--stride", type=int, help="patch step in pixels (default: half a patch)"
    )
    occlusion.add_argument("--out", type=Path, default=Path("occlusion.png"), help="PNG to write")

    history = _command(
        commands,
        "history",
        ("plot", "run_history"),
        checks=(_files("history"),),
        help="training curves from a JSON history",
    )
    history.add_argument(
        "history",
        type=Path,
        help='JSON: {"loss": [...], ...} or {"history": {...}, "phase_boundary": N}',
    )
    history.add_argument("--phase-boundary", type=int, help="epochs before fine-tuning")
    history.add_argument("--out", type=Path, default=Path("history.png"), help="PNG to write")


def _add_stylize(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(
        subparsers,
        "stylize",
        ("stylize", "run_stylize"),
        checks=(
            _files("content", "style"),
            _images("content", "style"),
            _positive("size", "steps"),
            ("zoo", "check_model_name", "model"),
            ("zoo", "check_weights_on_disk", "model", False),
        ),
        help="paint a photo in the style of another image (Gatys et al.)",
        description="Optimise the content image until its VGG features keep the photo's "
        "content and take on the style image's textures.",
    )
    parser.add_argument("content", help="the photo")
    parser.add_argument("style", help="the painting whose style to take")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--size", type=int, default=384, help="longer side in pixels")
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps")
    parser.add_argument("--model", default="vgg19", help="zoo model (default: %(default)s)")
    parser.add_argument("--weights", help="weights tag or file (default: the model's)")
    parser.add_argument("--manifest", help="a user manifest merged over the built-in one")
    parser.add_argument("--style-weight", type=float, help="style against content")
    parser.add_argument("--seed", type=int, default=0)


def _positive(*names: str) -> Check:
    def check(args: argparse.Namespace) -> None:
        for name in names:
            if getattr(args, name) is not None and getattr(args, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise KzooError(f"{flag} must be at least 1. Received: {getattr(args, name)}")

    return check


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(
        subparsers,
        "export",
        ("export", "run_export"),
        checks=(_files("model", optional=("labels",)),),
        help="export a saved model for serving (SavedModel, ONNX, LiteRT) and verify it",
        description="Write the model in another runtime's format, reload it there, and check "
        "that it computes what Keras does.",
    )
    parser.add_argument("model", help="a saved model (.keras)")
    parser.add_argument(
        "--format",
        choices=("tf_saved_model", "onnx", "litert", "openvino"),
        help="artifact format (default: from --out's suffix: .onnx, .tflite, .xml, else a "
        "SavedModel folder)",
    )
    parser.add_argument("--out", required=True, help="where to write the artifact")
    parser.add_argument(
        "--labels", help="class names to carry (default: <model>.labels.txt beside the model)"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip reloading and comparing the artifact"
    )


def _folders(attribute: str) -> Check:
    def check(args: argparse.Namespace) -> None:
        for value in getattr(args, attribute):
            if not Path(value).expanduser().is_dir():
                raise KzooError(f"no such folder: {value} (give folders of class sub-folders)")

    return check


def _check_options(args: argparse.Namespace) -> None:
    if not 0.0 < args.near_threshold <= 1.0:
        raise KzooError(f"--near-threshold must be in (0, 1]. Received: {args.near_threshold}")
    if args.imbalance < 1.0:
        raise KzooError(f"--imbalance must be at least 1. Received: {args.imbalance}")


def _add_check(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(
        subparsers,
        "check",
        ("check", "run_check"),
        checks=(_folders("folders"), _positive("workers", "min_side", "limit"), _check_options),
        help="find broken, duplicate, leaked and odd images in folders of class sub-folders",
        description="Check image folders before training: undecodable files, duplicates and "
        "near duplicates within a class, across classes and across splits (leaks), class "
        "counts, odd modes, tiny and EXIF-rotated images. Several folders are splits "
        "(train, validation, test). Exits with 1 when it finds an error. Never modifies "
        "the files.",
    )
    parser.add_argument("folders", nargs="+", metavar="DIR", help="folder of class sub-folders")
    parser.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    parser.add_argument(
        "--quick", action="store_true", help="only undecodable files and leaks across splits"
    )
    parser.add_argument("--workers", type=int, help="decoding processes (default: one per CPU)")
    parser.add_argument(
        "--near-threshold",
        type=float,
        default=0.99,
        help="thumbnail correlation from which two images are near duplicates (default 0.99)",
    )
    parser.add_argument(
        "--min-side", type=int, help="tiny below this side in pixels (default: median / 4)"
    )
    parser.add_argument(
        "--imbalance", type=float, default=3.0, help="largest/smallest class ratio to flag"
    )
    parser.add_argument("--limit", type=int, default=10, help="findings listed per kind")
    parser.add_argument("--no-cache", action="store_true", help="decode every file again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def make_parser(version: str) -> argparse.ArgumentParser:
    """The argument parser of every command (imports no command's code).

    Args:
        version: What ``kzoo --version`` prints.
    """
    parser = argparse.ArgumentParser(
        prog="kzoo",
        description="Keras models from architecture strings, a pretrained zoo, transfer learning.",
    )
    parser.add_argument("--version", action="version", version=f"kzoo {version}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what kzoo does")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    adders = (
        _add_dsl, _add_zoo, _add_check, _add_transfer, _add_cache, _add_plot, _add_stylize,
        _add_export,
    )  # fmt: skip
    for add in adders:
        add(subparsers)
    return parser
