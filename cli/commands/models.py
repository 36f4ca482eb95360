"""`glimpse models add|list|default|fetch|init|make-resnet50`: the models folder
(docs/models.md)."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from glimpse.cards import FALLBACK_DEFAULT, PRESETS, ModelCard, ModelRegistry, check_name
from glimpse.errors import InvalidParams, ModelError, NotFound


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="register, list, fetch or generate models")
    msub = p.add_subparsers(dest="models_command", required=True)

    add = msub.add_parser("add", help="register an ONNX classifier (copies it into the folder)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("file", metavar="FILE.onnx")
    add.add_argument("--labels", required=True, metavar="FILE", help="class names, one a line")
    add.add_argument("--preset", default="imagenet", choices=sorted(PRESETS))
    add.add_argument("--description", default="")
    add.add_argument("--force", action="store_true", help="replace a model of that name")
    add.add_argument("--default", action="store_true", help="make it the folder's default model")
    add.set_defaults(run=run_add)

    default = msub.add_parser("default", help="show, or set, the folder's default model")
    default.add_argument("name", metavar="NAME", nargs="?", help="a registered model")
    default.set_defaults(run=run_default)

    ls = msub.add_parser("list", help="the registered models")
    ls.add_argument("--json", action="store_true", help="as GET /v1/models answers")
    ls.set_defaults(run=run_list)

    fetch = msub.add_parser(
        "fetch", help="download the ONNX model zoo's ResNet50-v2-7 (pinned sha256) and register it"
    )
    fetch.add_argument("model", choices=("resnet50",))
    fetch.add_argument(
        "--labels",
        metavar="FILE",
        help="the 1000 ImageNet labels (default: the zoo's synset.txt, downloaded, pinned sha256)",
    )
    fetch.add_argument("--name", default="resnet50")
    fetch.add_argument("--url", help="a mirror of resnet50-v2-7.onnx (the sha256 is still checked)")
    fetch.add_argument("--force", action="store_true")
    fetch.add_argument("--default", action="store_true", help="make it the folder's default model")
    fetch.set_defaults(run=run_fetch)

    init = msub.add_parser(
        "init",
        help="make sure the folder has a default model: fetch ResNet50 (and make it the "
        "default) unless one is registered",
    )
    init.set_defaults(run=run_init)

    make = msub.add_parser(
        "make-resnet50",
        help="write an UNTRAINED ResNet50-v2-architecture graph (seeded weights) for cost only",
    )
    make.add_argument("--name", default="resnet50-untrained")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--force", action="store_true")
    make.set_defaults(run=run_make)


def _registry() -> ModelRegistry:
    from glimpse.settings import get_settings

    return ModelRegistry(get_settings().models_dir)


def _target_folder(registry: ModelRegistry, name: str, force: bool) -> Path:
    try:
        check_name(name)
    except NotFound as exc:
        raise InvalidParams(exc.detail) from None
    folder = registry.root / name
    if (folder / "model.json").exists() and not force:
        raise InvalidParams(f"a model named {name!r} exists in {registry.root}; use --force")
    return folder


def _check_runs(folder: Path, card: ModelCard) -> None:
    """Open the registered model in ONNX Runtime once and check its output size."""
    import numpy as np

    from worker.runtime.onnx import OnnxRuntimeModel

    model = OnnxRuntimeModel(folder / "model.onnx", card)
    h, w = card.input_size
    out = model(np.zeros((1, 3, h, w), np.float32))
    if out.shape[1] != card.num_classes:
        raise ModelError(f"the model answers {out.shape[1]} values, not {card.num_classes}")


def _labels_checked(path: Path, num_classes: int) -> list[str]:
    from glimpse.modelfiles import read_labels

    labels = read_labels(path)
    if len(labels) != num_classes:
        raise InvalidParams(
            f"--labels: {path} has {len(labels)} labels, the model has {num_classes} classes"
        )
    return labels


def _write_labels(folder: Path, labels: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")


def run_add(args: argparse.Namespace) -> int:
    from glimpse.modelfiles import card_from_graph, copy_file, inspect_onnx

    registry = _registry()
    src = Path(args.file)
    if not src.is_file():
        raise NotFound(f"no such model file: {src}")
    folder = _target_folder(registry, args.name, args.force)
    info = inspect_onnx(src)
    labels = _labels_checked(Path(args.labels), info.num_classes)
    card = card_from_graph(info, args.preset, description=args.description)
    copy_file(src, folder / "model.onnx")
    _write_labels(folder, labels)
    try:
        _check_runs(folder, card)
    except ModelError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    registry.write(args.name, card)
    if args.default:
        registry.set_default(args.name)
    print(
        f"registered {args.name!r}: input {card.input_name} {card.input_size[0]}x"
        f"{card.input_size[1]} ({args.preset}), output {card.output_name}, "
        f"{card.num_classes} classes -> {folder}"
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    from glimpse.settings import get_settings

    settings = get_settings()
    registry = ModelRegistry(settings.models_dir)
    rows = []
    for name in registry.names():
        try:
            card = registry.get(name).card
        except ModelError as exc:
            print(f"# {name}: {exc.detail}")
            continue
        rows.append(
            {
                "name": name,
                "input_size": list(card.input_size),
                "num_classes": card.num_classes,
                "default": name == settings.default_model,
                "description": card.description,
            }
        )
    if args.json:
        print(
            json.dumps(
                [{k: r[k] for k in ("name", "input_size", "num_classes", "default")} for r in rows],
                indent=2,
            )
        )
        return 0
    if not rows:
        print(f"no models in {registry.root} (see `glimpse models add`)")
        return 0
    width = max(len(r["name"]) for r in rows)  # type: ignore[arg-type]
    print(f"  {'NAME':<{width}}  {'INPUT':>9}  {'CLASSES':>7}  DESCRIPTION")
    for r in rows:
        mark = "*" if r["default"] else " "
        size = "x".join(str(v) for v in r["input_size"])  # type: ignore[attr-defined]
        print(f"{mark} {r['name']:<{width}}  {size:>9}  {r['num_classes']:>7}  {r['description']}")
    print(f"(* default; models folder {registry.root})")
    return 0


def run_default(args: argparse.Namespace) -> int:
    from glimpse.settings import get_settings

    settings = get_settings()
    registry = ModelRegistry(settings.models_dir)
    if args.name is None:
        print(settings.default_model)
        return 0
    registry.set_default(args.name)
    if settings.default_model_name and settings.default_model_name != args.name:
        print(f"# GLIMPSE_DEFAULT_MODEL={settings.default_model_name} overrides it while it is set")
    print(f"default model of {registry.root}: {args.name}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    fetch_resnet50(
        args.name, labels=args.labels, url=args.url, force=args.force, default=args.default
    )
    return 0


def fetch_resnet50(
    name: str, *, labels: str | None, url: str | None, force: bool, default: bool
) -> None:
    """Download the zoo's ResNet50 (and its labels, unless given) from the configured
    sources, check their sha256, register it and check that it runs."""
    from glimpse.modelfiles import download, read_labels, resnet50_card
    from glimpse.settings import get_settings

    settings = get_settings()
    registry = ModelRegistry(settings.models_dir)
    folder = _target_folder(registry, name, force)
    existed = folder.exists()
    try:
        if labels is None:
            synset = download(
                settings.resnet50_labels_url,
                folder / "synset.txt",
                settings.resnet50_labels_sha256,
            )
            names = read_labels(synset)
            synset.unlink()
            if len(names) != 1000:
                raise ModelError(
                    f"{settings.resnet50_labels_url} has {len(names)} labels, not 1000"
                )
        else:
            names = _labels_checked(Path(labels), 1000)
        download(url or settings.resnet50_url, folder / "model.onnx", settings.resnet50_sha256)
    except Exception:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    _write_labels(folder, names)
    card = resnet50_card(
        description="ResNet50-v2-7, ONNX model zoo, ImageNet-1k (shorter side 256, crop 224)"
    )
    _check_runs(folder, card)
    registry.write(name, card)
    if default:
        registry.set_default(name)
    print(
        f"registered {name!r} (resnet50-v2-7, sha256 {settings.resnet50_sha256[:12]}…) -> {folder}"
    )


def run_init(args: argparse.Namespace) -> int:
    """Nothing to do when the default model is registered; else fetch ResNet50 as the
    default. Offline, one line says how to add a model instead."""
    from glimpse.errors import DownloadFailed
    from glimpse.settings import get_settings

    del args
    settings = get_settings()
    registry = ModelRegistry(settings.models_dir)
    name = settings.default_model
    if registry.has(name):
        print(f"default model {name!r} is registered in {registry.root}")
        return 0
    if name != FALLBACK_DEFAULT:
        raise NotFound(
            f"the default model {name!r} is not registered in {registry.root}: add it with "
            f"`glimpse models add {name} FILE.onnx --labels FILE`"
        )
    try:
        fetch_resnet50(name, labels=None, url=None, force=True, default=True)
    except DownloadFailed as exc:
        raise DownloadFailed(
            f"no model in {registry.root}, and ResNet50 cannot be fetched ({exc.detail}); "
            "add one with `glimpse models add NAME FILE.onnx --labels FILE --default`, or set "
            "GLIMPSE_RESNET50_URL to a mirror"
        ) from None
    return 0


def run_make(args: argparse.Namespace) -> int:
    from glimpse.modelfiles import UNTRAINED_DESCRIPTION, resnet50_card, write_resnet50_untrained

    registry = _registry()
    folder = _target_folder(registry, args.name, args.force)
    started = time.perf_counter()
    params = write_resnet50_untrained(folder / "model.onnx", seed=args.seed)
    card = resnet50_card(labels_file=None, description=UNTRAINED_DESCRIPTION.format(seed=args.seed))
    (folder / "labels.txt").unlink(missing_ok=True)
    _check_runs(folder, card)
    registry.write(args.name, card)
    print(
        f"wrote {args.name!r}: UNTRAINED ResNet50-v2 architecture, {params / 1e6:.1f}M parameters, "
        f"seed {args.seed}, in {time.perf_counter() - started:.1f} s -> {folder} "
        "(for cost only; its predictions mean nothing)"
    )
    return 0
