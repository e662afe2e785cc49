"""A model ready to use, with what the app needs to say and cache about it: `LoadedModel`.

A model reaches the pages from three places: a checkpoint file, an upload, or a run whose checkpoint
lives in the registry (trained on another host). Whatever the source, a page gets the module, its
metadata (the checkpoint's JSON sidecar), a name to show and a key that changes whenever the
weights could have (used to cache what is computed from the model: feature maps, attributions,
exports).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module  # in eval mode; shared by every session: never mutated in place
    meta: dict              # the checkpoint's metadata: architecture, metrics, run_id, ...
    name: str               # in the reader's words: "lenet5", "uploaded my-net", "run 20261130-..."
    key: tuple              # identifies this version of the weights: ("file", path, mtime), ("upload", sha256)...

    @property
    def run_id(self) -> str | None:
        """The run that trained it, if one did (its snapshots can be replayed)."""
        return self.meta.get("run_id")
