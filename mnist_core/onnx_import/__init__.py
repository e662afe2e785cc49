"""Bring your own model: an ONNX classifier from anywhere, checked as hostile, then a LoadedModel.

The API a page or the CLI needs (mnist_core.loaded.LoadedModel is what every page already uses):

    load_onnx(data: bytes, name: str, *, layout=None, scale=None, ink=None, output=None,
              owner="local", poll=lambda: None) -> LoadedModel
        `name` is the file's name as the visitor gave it (only ever shown, never opened). Raises
        OnnxRefused (mnist_core.errors) with one line naming the reason for a file the lab does not
        run, BusyError when heavy work is at its bounds (it runs as `owner`'s heavy job; `poll` is
        called while it waits, a page passes Streamlit's stop check). `layout`, `scale`, `ink` and
        `output` fix parts of the input convention (conventions.LAYOUTS, SCALES, INKS, OUTPUTS);
        the rest is found by score.
    The LoadedModel's `model` takes [N,1,28,28] in [0,1] and returns logits, like a zoo model; its
    meta holds what a page shows and offers:
        meta["reading"]      "NHWC, pixels 0..1, logits: 97.9% on 512 training images" (says
                             "near chance" when no convention reads the model)
        meta["near_chance"]  True when the best convention scores under conventions.NEAR_CHANCE
        meta["convention"]   {"layout", "scale", "ink", "output"} in use
        meta["options"]      every convention the input shape admits, with its score on the sample:
                             [{"layout", "scale", "ink", "text", "accuracy"}], for an override select
        meta["architecture"] "onnx"; meta["file"] the name; meta["opset"]
    choose(loaded, layout, scale, ink, output=None) -> LoadedModel: the same upload read with another
        of meta["options"] (a page's override select), rebuilt in the server without a second check.
    describe_layers(model) -> [{"name", "op", "shape"}]: the layers whose activations the lab draws.

How it is kept safe and made to fit: checks.py (what is refused, before anything runs),
sandbox.py (the first load and a trial inference in a limited child process), conventions.py (how
the input convention is found), adapter.py (the graph as a torch module behind the lab's input).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from pathlib import PurePath
from typing import Callable

import numpy as np

from .. import inspection
from ..errors import OnnxRefused
from ..loaded import LoadedModel
from .conventions import INKS, LAYOUTS, OUTPUTS, SAMPLE_SIZE, SCALES, Convention, Reading, candidates

__all__ = ["OnnxRefused", "load_onnx", "choose", "describe_layers", "LAYOUTS", "SCALES", "INKS", "OUTPUTS"]


def _check_choice(what: str, value, allowed) -> None:
    if value is not None and value not in allowed:
        raise OnnxRefused(f"{what} must be one of {', '.join(allowed)}, not {str(value)[:20]!r}")


def load_onnx(data: bytes, name: str, *, layout: str | None = None, scale: str | None = None,
              ink: str | None = None, output: str | None = None, owner: str = "local",
              poll: Callable[[], None] = lambda: None) -> LoadedModel:
    """An uploaded ONNX file as a LoadedModel, or OnnxRefused in one line (see the module docstring)."""
    # onnx and onnx2torch load on the first upload: the CLI's other commands, and servers that never
    # see an upload, do without them (about two seconds and their memory).
    from . import adapter, checks
    from .sandbox import verify

    name = PurePath(str(name)).name[:80] or "the file"  # shown only: never a path
    for what, value, allowed in (("layout", layout, LAYOUTS), ("scale", scale, SCALES), ("ink", ink, INKS),
                                 ("output", output, OUTPUTS)):
        _check_choice(what, value, allowed)
    data = bytes(data)
    found, reading = verify(data, name, {"layout": layout, "scale": scale, "ink": ink}, owner=owner, poll=poll)
    convention = replace(reading.convention, output=output) if output else reading.convention
    if output:
        reading = replace(reading, convention=convention)
    net = adapter.build(checks.parse(data, name), found, convention)
    net.package = adapter.Package(data, found, convention)  # how it crosses to a heavy job's child
    scores = dict(reading.scores)
    options = [{"layout": c.layout, "scale": c.scale, "ink": c.ink, "text": c.text.rsplit(", ", 1)[0],
                "accuracy": scores.get(c.text.rsplit(", ", 1)[0])} for c in candidates(found.layouts)]
    meta = {"architecture": "onnx", "file": name, "sha256": hashlib.sha256(data).hexdigest(), "opset": found.opset,
            "options": options, "layouts": list(found.layouts)}
    return _loaded(net, meta, reading)


def _loaded(net, meta: dict, reading) -> LoadedModel:
    convention = net.convention
    meta = {**meta, "convention": asdict(convention), "reading": reading.describe(),
            "near_chance": reading.near_chance, "sample_accuracy": reading.accuracy, "sample": reading.sample}
    return LoadedModel(model=net, meta=meta, name=f"uploaded {PurePath(meta['file']).stem}",
                       key=("onnx", meta["sha256"], *convention.key, convention.output))


def choose(loaded: LoadedModel, layout: str, scale: str, ink: str, output: str | None = None) -> LoadedModel:
    """`loaded` read with another of its meta["options"] (and output kind, else the one found)."""
    from . import adapter  # loaded by the load_onnx that made `loaded`

    option = next((o for o in loaded.meta["options"] if (o["layout"], o["scale"], o["ink"]) == (layout, scale, ink)),
                  None)
    if option is None:
        raise OnnxRefused(f"{loaded.meta['file']} cannot be read as {layout}, {scale}, {ink}: its input admits "
                          f"{', '.join(loaded.meta['layouts'])}")
    _check_choice("output", output, OUTPUTS)
    package = loaded.model.package
    convention = Convention(layout, scale, ink, output or package.convention.output)
    net = adapter.Package(package.data, package.found, convention).rebuild()
    reading = Reading(convention, option["accuracy"], loaded.meta.get("sample", SAMPLE_SIZE), (), chosen=True)
    return _loaded(net, loaded.meta, reading)


def describe_layers(model) -> list[dict]:
    """[{"name", "op", "shape"}] for each layer whose activation the lab draws, shape for one image."""
    maps, _ = inspection.feature_maps(model, np.zeros((28, 28), np.float32))
    ops = getattr(model, "feature_ops", {})
    return [{"name": name, "op": ops.get(name, type(model.body.get_submodule(name)).__name__),
             "shape": list(values.shape)} for name, values in maps]
