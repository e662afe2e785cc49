"""The command line: python -m mnist_core fetch-data | train | submit | sweep | evaluate CKPT|RUN_ID|FILE.onnx
[--on drawings] | inspect FILE.onnx|CKPT [--json] | export CKPT | runs [--json] | runs prune [--dry-run]
| drawings list [--json]|export|import|delete | models | presets | kernels.

`train` takes every TrainConfig field as a flag (generated from the dataclass, so the flags, the
Train page's form and the config are one list), or `--preset NAME` (flags then override the preset),
or `--run-id ID` to execute a queued run (a Ray job's command; local runners fork workers). `submit` takes the same
flags but queues the run through the configured executor (local runners, or a Ray cluster when
MNIST_RAY_ADDRESS is set) and prints its id; `--wait` follows it to its end.

Errors a user can cause print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import data, drawings, executors, export, kernels, registry, retention, runfiles, sweeps
from .artifacts import load_run_model
from .checkpoints import load_checkpoint, read_capped
from .errors import CheckpointError, ConfigError, DataError, MnistLabError, OnnxRefused
from .evaluate import evaluate_on_drawings
from .models import count_parameters, create_model, list_models, model_info, torch_type_name
from .onnx_import import describe_layers, load_onnx
from .onnx_import.conventions import INKS, LAYOUTS, OUTPUTS, SCALES
from .records import LIVE, RunStatus
from .runfiles import RUN_ID
from .training import PRESETS, TrainConfig, admit, evaluate, preset_config
from .worker import execute_run

EXAMPLE_RUN_ID = "20250131-142501-3fa9c2"  # what runfiles.new_run_id makes: date, time, 6 hex digits


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training config (TrainConfig fields)")
    for f in TrainConfig.fields():
        meta = f.metadata
        extra = f" (one of: {', '.join(map(str, meta['choices']))})" if meta["choices"] else ""
        if meta["min"] is not None:
            extra = f" ({meta['min']} to {meta['max']})"
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default), default=None,
                           metavar=type(f.default).__name__.upper() if not meta["choices"] else "NAME",
                           help=f"{meta['help']}{extra}; default {f.default}")


def cmd_fetch_data(args) -> int:
    with tqdm(total=100, unit="%", desc="MNIST", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(message[:70])
            bar.refresh()
        folder = data.fetch(root=args.data_dir, progress=progress, mirror_timeout=args.timeout)
    print(f"MNIST verified in {folder}")
    return 0


def cmd_train(args) -> int:
    if args.run_id is not None:  # given, even empty: never a default training instead
        if not RUN_ID.match(args.run_id):
            raise MnistLabError(f"--run-id {args.run_id[:40]!r} is not a run id: one looks like "
                                f"{EXAMPLE_RUN_ID} (see `runs`)")
        if args.preset or _config_flags(args):
            raise MnistLabError("--run-id runs a queued run as it was configured: give no other config flags")
        run_id = args.run_id
        if os.environ.get("MNIST_FETCH_MISSING_DATA") == "1":
            _fetch_missing_data(run_id)
    else:
        config = admit(_config_from_flags(args))
        run_id = registry.create_run(config.to_dict(), worker_pid=os.getpid())  # this process runs it
        print(f"run {run_id}: {config.summary()}")

    bars = []  # made at the first row, so an error before training starts prints as one line, alone

    def show(row) -> None:
        if not bars:  # the run is running by now, its planned steps recorded
            bars.append(tqdm(total=registry.get_run(run_id).total_steps, unit="step", disable=args.quiet))
        bar = bars[0]
        if row["split"] == "train":
            bar.n = row["step"]
            bar.set_postfix(loss=f"{row['loss']:.4f}", ips=f"{row['images_per_s']:.0f}", refresh=False)
            bar.update(0)
        elif row["split"] == "val":
            bar.write(f"step {row['step']}: validation accuracy {row['accuracy']:.4f}, loss {row['loss']:.4f}")

    try:
        run = execute_run(run_id, checkpoint_path=args.checkpoint, on_event=show)
    finally:
        for bar in bars:
            bar.close()
    if run.status == RunStatus.COMPLETED:
        print(f"test accuracy {run.test_accuracy:.4f} (best validation {run.best_val_accuracy or float('nan'):.4f})")
        print(f"checkpoint {run.checkpoint}")
        return 0
    print(f"run {run_id} {run.status}")
    return 1


def _fetch_missing_data(run_id: str) -> None:
    """A worker on a host without MNIST (a fresh Ray node) fetches and MD5-verifies it first, as
    `fetch-data` does; a fetch that fails fails the run with its one-line reason."""
    if data.is_present():
        return
    print("MNIST is not on this host: fetching it", file=sys.stderr)
    try:
        data.fetch()
    except DataError as exc:
        registry.finish_run(runfiles.check_run_id(run_id), RunStatus.FAILED, error=str(exc))
        raise


def _config_flags(args) -> dict:
    """The TrainConfig fields given as flags (train, submit and sweep take them all)."""
    fields = {f.name for f in TrainConfig.fields()}
    return {k: v for k, v in vars(args).items() if k in fields and v is not None}


def _config_from_flags(args):
    """The TrainConfig the flags say: --preset's recipe, if given, with the field flags over it."""
    overrides = _config_flags(args)
    return preset_config(args.preset, **overrides) if args.preset else TrainConfig.from_dict(overrides)


def cmd_submit(args) -> int:
    config = admit(_config_from_flags(args))
    run_id = executors.for_host().submit(config.to_dict())
    print(run_id, flush=True)  # alone on stdout, for scripts: RUN=$(python -m mnist_core submit ...)
    if not args.wait:
        return 0
    return follow(run_id, quiet=args.quiet)


def follow(run_id: str, quiet: bool = False, poll_seconds: float = 0.5) -> int:
    """Follow a submitted run to its end with a progress bar (stderr); 0 when it completed, else 1."""
    executor = executors.for_host()
    last_check = 0.0
    with tqdm(total=None, unit="step", desc=run_id, disable=quiet, file=sys.stderr) as bar:
        while True:
            run = registry.get_run(run_id)
            if run.total_steps and bar.total != run.total_steps:
                bar.total = run.total_steps
            bar.n = run.steps or 0
            bar.set_postfix_str(str(run.status) + (f" on {run.node}" if getattr(run, "node", None) else ""))
            if run.status not in LIVE:
                break
            if time.monotonic() - last_check > 5.0:  # e.g. a Ray job that died before its run started
                last_check = time.monotonic()
                _reconcile(executor)
            time.sleep(poll_seconds)
        bar.n = run.steps or bar.n
        bar.refresh()
    if run.status == RunStatus.COMPLETED:
        print(f"run {run_id} completed: test accuracy {run.test_accuracy:.4f}")
        return 0
    print(f"run {run_id} {run.status}" + (f": {one_line(run.error)}" if run.error else ""))
    return 1


def _reconcile(executor) -> None:
    """Bring the registry up to date with the executor (Executor.reconcile), or say why not."""
    try:
        executor.reconcile()
    except MnistLabError as exc:  # the cluster cannot be reached now: the registry still says what it knows
        print(f"warning: {exc}", file=sys.stderr)


def cmd_sweep(args) -> int:
    return sweeps.cli(args.param, _config_from_flags(args).to_dict(), random=args.random, seeds=args.seeds,
               sample_seed=args.sample_seed, wait=args.wait)


def cmd_export(args) -> int:
    model, meta = load_checkpoint(args.checkpoint)
    suffix = export.ONNX_SUFFIX if args.format == "onnx" else export.BUNDLE_SUFFIX
    out = Path(args.out or Path(args.checkpoint).name.removesuffix(".safetensors").removesuffix(".json") + suffix)
    path = export.export_checkpoint(model, meta, args.format, out)
    print(f"{args.format} written to {path} ({path.stat().st_size:,} bytes)")
    if args.format == "onnx":
        images = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        diff = export.onnx_max_difference(model, path.read_bytes(), images)
        print(f"onnxruntime vs PyTorch on 16 random images: largest logit difference {diff:.1e}")
    return 0


def cmd_evaluate(args) -> int:
    if RUN_ID.match(args.checkpoint):  # a run id: its checkpoint wherever it lives (a file here, or the registry)
        model, meta = load_run_model(args.checkpoint)
    elif args.checkpoint.lower().endswith(".onnx"):  # a model from elsewhere, checked as hostile first
        model, meta = _load_onnx_file(args.checkpoint, args)
    else:
        model, meta = load_checkpoint(args.checkpoint)
    if args.on == "drawings":
        return _evaluate_on_drawings(model, meta, args.part)
    images, labels = data.load_mnist("test", root=args.data_dir)
    loss, acc = evaluate(model, images, labels)
    print(f"{meta.get('file') or meta['architecture']}: test accuracy {acc:.4f} ({round(acc * len(labels))}/"
          f"{len(labels)}), loss {loss:.4f}")
    return 0


def _load_onnx_file(file: str, args):
    """(model, meta) of an ONNX file (mnist_core.onnx_import), its input convention found or as the flags fix
    it; how it was read is said first (on stderr, with a warning when near chance)."""
    from .onnx_import import checks  # here: it loads onnx, which only an .onnx file needs

    path = Path(file)
    try:
        data = read_capped(path, checks.max_bytes())
    except CheckpointError as exc:
        raise OnnxRefused(str(exc)) from None
    loaded = load_onnx(data, path.name, layout=args.layout, scale=args.scale, ink=args.ink, output=args.output,
                       owner="cli")
    print(f"{path.name} read as {loaded.meta['reading']}", file=sys.stderr)
    return loaded.model, loaded.meta


def _add_onnx_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("an ONNX file's input convention (found by score unless fixed here)")
    group.add_argument("--layout", choices=tuple(LAYOUTS), help="NCHW [N,1,28,28], NHWC [N,28,28,1], NHW [N,28,28] "
                                                               "or flat [N,784]")
    group.add_argument("--scale", choices=SCALES, help="the pixels it expects: 0..1, 0..255, mean/std (MNIST's) "
                                                       "or -1..1")
    group.add_argument("--ink", choices=INKS, help="inverted: dark digits on white")
    group.add_argument("--output", choices=OUTPUTS, help="what it returns (read from its answers unless given)")


def cmd_inspect(args) -> int:
    """The layers whose activations the lab draws: name, op and shape for one image."""
    if args.model.lower().endswith(".onnx"):
        model, _ = _load_onnx_file(args.model, args)
    else:
        model, _ = load_checkpoint(args.model)
        model.feature_ops = {n: "+".join(torch_type_name(m) for m in model.body.get_submodule(n).modules()
                                         if not list(m.children())) for n in model.feature_layers}
    rows = describe_layers(model)
    for row in rows:
        print(json.dumps(row) if args.json else f"{row['name']:32} {row['op']:18} {'x'.join(map(str, row['shape']))}")
    if not rows and not args.json:
        print("no layers the lab can draw (no convolution, pooling or activation)")
    return 0


def _evaluate_on_drawings(model, meta: dict, part: str) -> int:
    result = evaluate_on_drawings(model, part=part)
    right, n = int((result.predictions.labels == result.predictions.predicted).sum()), len(result.ids)
    which = "the drawings" if part == "all" else f"the {part} drawings"
    print(f"{meta.get('file') or meta['architecture']}: accuracy on {which} {result.accuracy:.4f} ({right}/{n})")
    print("per digit: " + "  ".join(f"{r['digit']} {_fmt(None if r['support'] == 0 else r['recall'], '.2f')} "
                                    f"({r['support']})" for r in result.per_digit()))
    return 0


def cmd_drawings(args) -> int:
    """The visitors' drawing set: list [--json] | export --out DIR | import DIR | delete ID."""
    if args.drawings_action == "export":
        done = drawings.export_set(args.out)
        print(f"{done.count} drawings written to {done.folder} (IDX, strokes.jsonl, DATASHEET.md)")
    elif args.drawings_action == "import":
        done = drawings.import_set(args.folder, class_code=args.class_code)
        print(f"imported {done.added} drawings ({done.already_held} already in the set)"
              + (f"; the set's licence: {done.licence}" if done.licence else ""))
    elif args.drawings_action == "delete":
        drawings.delete_drawing(args.id)
        print(f"drawing {args.id} removed")
    elif args.json:  # one object per line, as `runs --json`
        for d in drawings.list_drawings():
            print(json.dumps({"id": d.id, "created_at": d.created_at, "digit": d.digit, "predicted": d.predicted,
                              "pointer": d.pointer, "class_code": d.class_code, "strokes": len(d.strokes),
                              "points": sum(map(len, d.strokes))}))
    else:
        rows = drawings.list_drawings()
        if not rows:
            print("no drawings yet: visitors give them on the Draw page")
            return 0
        print(f"{'id':>6} {'given (UTC)':16} {'digit':>5} {'model':>5} {'pointer':7} {'points':>6}  class")
        for d in rows:
            given = time.strftime("%Y-%m-%d %H:%M", time.gmtime(d.created_at))
            print(f"{d.id:>6} {given:16} {d.digit:>5} {_fmt(d.predicted, 'd'):>5} {d.pointer:7} "
                  f"{sum(map(len, d.strokes)):>6}  {d.class_code or '-'}")
    return 0


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


ERROR_WIDTH = 200  # the runs table's error column: a reason is one short line (runs --json has the text whole)


def one_line(text: str) -> str:
    """A run's error as a table shows it: its first line that says something (a carriage return ends a
    line too, as in a progress bar's redraws), cut to ERROR_WIDTH characters."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= ERROR_WIDTH else line[:ERROR_WIDTH - 1] + "…"


RUN_JSON_FIELDS = ("id", "status", "config", "node", "host", "job_id", "created_at", "started_at", "finished_at",
                   "steps", "total_steps", "best_val_accuracy", "test_accuracy", "error", "sweep", "class_code")


def cmd_runs(args) -> int:
    _reconcile(executors.for_host())  # e.g. a Ray job that died before its run started reads as failed
    rows = registry.list_runs()
    if args.json:  # one object per line (JSON Lines): `runs --json | jq` or a line-by-line reader
        for r in rows:
            print(json.dumps({k: getattr(r, k, None) for k in RUN_JSON_FIELDS}))
        return 0
    if not rows:
        print("no runs yet: start one with `python -m mnist_core train`")
        return 0
    print(f"{'id':24} {'status':10} {'model':11} {'val acc':>8} {'test acc':>8} {'time':>7}  {'node':16} error")
    for r in rows:
        node = getattr(r, "node", None) or r.host or "-"
        print(f"{r.id:24} {r.state:10} {r.config.get('model', '?'):11} {_fmt(r.best_val_accuracy, '8.4f')} "
              f"{_fmt(r.test_accuracy, '8.4f')} {_fmt(r.duration, '6.0f')}s  {node:16} {one_line(r.error or '')}")
    return 0


def cmd_prune(args) -> int:
    rules = retention.policy()
    for flag, value in (("--keep-runs", args.keep_runs), ("--keep-days", args.keep_days)):
        if value is not None and not value >= 0:
            raise ConfigError(f"{flag} must be 0 (no limit) or more, got {value}")
    rules = retention.Policy(keep_runs=rules.keep_runs if args.keep_runs is None else args.keep_runs,
                             keep_days=rules.keep_days if args.keep_days is None else args.keep_days)
    if not rules.active:
        print("retention is off: set MNIST_KEEP_RUNS or MNIST_KEEP_RUN_DAYS (on by default under MNIST_DEMO), "
              "or pass --keep-runs / --keep-days")
        return 0
    result = retention.prune(rules, limit=None, dry_run=args.dry_run)
    for r in result.removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {r.id} {r.status:10} {r.config.get('model', '?')}")
    for problem in result.problems:
        print(f"error: {problem}", file=sys.stderr)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{rules.describe()}: {verb} {len(result.removed)} run(s)")
    return 2 if result.problems else 0


def cmd_models(args) -> int:
    for name in list_models():
        info = model_info(name)
        print(f"{name:11} {count_parameters(create_model(name)):>8,} params  {info.description}  [{info.provenance}]")
    return 0


def cmd_presets(args) -> int:
    for p in PRESETS.values():
        print(f"{p.name:22} {p.description}" + (f" Article: {p.reported}." if p.reported else ""))
    return 0


def cmd_kernels(args) -> int:
    built = kernels.available()  # builds them now, so training workers find them ready
    print(f"LeNet-5's fused CPU kernels: {kernels.status()}")
    if built:
        print(f"built in {kernels.build_dir()}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a malformed command line reported in one line, like every other error here."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m mnist_core", description="MNIST Lab's core: data, training, runs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch-data", help="download and verify MNIST into the data folder")
    p.add_argument("--data-dir", default=None, help="folder to put MNIST in (default: data/ or $MNIST_DATA_DIR)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for each torchvision mirror")
    p.set_defaults(func=cmd_fetch_data)

    p = sub.add_parser("train", help="train a model (recorded in the run registry, checkpoint written)")
    p.add_argument("--preset", default=None, help="start from a named recipe (see `presets`)")
    p.add_argument("--run-id", default=None, help="execute this queued run from the registry (what a Ray job runs)")
    p.add_argument("--checkpoint", default=None,
                   help="where to write the checkpoint (default: checkpoints/MODEL-RUNID)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("submit", help="queue a run through the configured executor (local runners, or the Ray "
                                      "cluster at MNIST_RAY_ADDRESS) and print its id")
    p.add_argument("--preset", default=None, help="start from a named recipe (see `presets`)")
    p.add_argument("--wait", action="store_true", help="follow the run to its end with a progress bar; exit 1 "
                                                       "unless it completed")
    p.add_argument("--quiet", action="store_true", help="with --wait: no progress bar")
    _add_config_flags(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("sweep", help="queue many runs that differ in 1 to 3 fields (a sweep) and print their ids")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUES",
                   help="a field to vary: NAME=V1,V2,... or NAME=LOW..HIGH[:POINTS] (lr, weight_decay and "
                        "batch_size ranges are log-spaced); up to 3")
    p.add_argument("--random", type=int, default=0, metavar="N", help="N random points instead of the full grid")
    p.add_argument("--sample-seed", type=int, default=0, help="the random points' seed (default 0)")
    p.add_argument("--seeds", type=int, default=1, metavar="K", help="repeat each point with K seeds (default 1)")
    p.add_argument("--wait", action="store_true", help="follow the runs to their end and print what the sweep "
                                                        "showed; exit 1 unless every run completed")
    p.add_argument("--preset", default=None, help="start from a named recipe (see `presets`)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("evaluate", help="test-set accuracy of a checkpoint, or of a run's checkpoint wherever it "
                                        "lives (a file here, or the run registry)")
    p.add_argument("checkpoint", help="a .safetensors file with its .json sidecar, a run id, or an .onnx file")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--on", choices=("test", "drawings"), default="test",
                   help="test: MNIST's 10,000 test digits (default); drawings: the visitors' drawing set")
    p.add_argument("--part", choices=("all", "train", "held-out"), default="all",
                   help="with --on drawings: the whole set (default), or its part a run trains on or the part "
                        "held out from training (split by giver)")
    _add_onnx_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("inspect", help="the layers whose activations the lab draws (feature maps), of an ONNX file "
                                       "or a checkpoint: name, op and shape for one image")
    p.add_argument("model", help="an .onnx file, or a .safetensors checkpoint with its .json sidecar")
    p.add_argument("--json", action="store_true", help="one JSON object per line: name, op, shape")
    _add_onnx_flags(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("drawings", help="the visitors' drawing set: list, export, import, delete")
    actions = p.add_subparsers(dest="drawings_action", required=True)
    pp = actions.add_parser("list", help="every drawing: id, when, digit, the model's answer, pointer, class")
    pp.add_argument("--json", action="store_true", help="one JSON object per line per drawing")
    pp = actions.add_parser("export", help="write the set in MNIST's IDX format, with strokes.jsonl and a "
                                           "DATASHEET.md (licence: MNIST_DRAWINGS_LICENCE, CC0-1.0 by default)")
    pp.add_argument("--out", required=True, metavar="DIR", help="folder to write the four files into")
    pp = actions.add_parser("import", help="add a set that `drawings export` wrote (pictures the set has are "
                                           "skipped; all or nothing under MNIST_DRAWINGS_MAX)")
    pp.add_argument("folder", metavar="DIR")
    pp.add_argument("--class", dest="class_code", default=None, metavar="CODE",
                    help="tag the imported drawings with this class code")
    pp = actions.add_parser("delete", help="remove one drawing (the operator may remove any)")
    pp.add_argument("id", type=int)
    p.set_defaults(func=cmd_drawings)

    p = sub.add_parser("export", help="write a checkpoint as ONNX, or as one bundle file (weights + metadata)")
    p.add_argument("checkpoint", help="a .safetensors file with its .json sidecar")
    p.add_argument("--format", choices=("onnx", "bundle"), default="onnx",
                   help="onnx: a graph any ONNX runtime runs (input image [N,1,28,28] in [0,1], output logits "
                        "[N,10]); bundle: one safetensors file holding the sidecar too, accepted by the pages' "
                        "checkpoint upload; default onnx")
    p.add_argument("--out", default=None, help="file to write (default: the checkpoint's name with .onnx or "
                                               ".bundle.safetensors, in the current folder)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("runs", help="list the runs in the registry")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line per run (id, status, config, node, host, job_id, test_accuracy, "
                        "error, sweep, class_code...)")
    p.set_defaults(func=cmd_runs)
    pp = p.add_subparsers(dest="runs_action").add_parser(
        "prune", help="remove the finished runs the retention policy says are due, oldest first (their rows, "
                      "metrics, artifacts and files); the policy is MNIST_KEEP_RUNS and MNIST_KEEP_RUN_DAYS, "
                      "on by default under MNIST_DEMO (500 runs, 7 days)")
    pp.add_argument("--dry-run", action="store_true", help="only list the runs it would remove")
    pp.add_argument("--keep-runs", type=int, metavar="N", help="keep the newest N finished runs (0 = no limit; "
                                                               "default MNIST_KEEP_RUNS)")
    pp.add_argument("--keep-days", type=float, metavar="D", help="remove finished runs D days after they ended "
                                                                 "(0 = never; default MNIST_KEEP_RUN_DAYS)")
    pp.set_defaults(func=cmd_prune)
    p = sub.add_parser("models", help="list the model zoo")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("presets", help="list the training presets")
    p.set_defaults(func=cmd_presets)
    p = sub.add_parser("kernels", help="build LeNet-5's fused CPU kernels now (else the first LeNet-5 training "
                                       "does) and say whether training uses them")
    p.set_defaults(func=cmd_kernels)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MnistLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
