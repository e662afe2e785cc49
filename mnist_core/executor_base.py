"""The Executor interface: what every backend that runs queued runs does, and the steps they share.

mlflow's AbstractStore is the model: one class says what an executor does, each backend implements
its part (executors.LocalExecutor, ray_executor.RayExecutor), and executors.for_host() picks the one
this host's configuration names. The steps every executor takes the same way live here, once:

    submit     admit the config (training.admit: engine, host, hosting bounds), create the run in the
               registry ("queued", with its owner's queue caps), then `start` it; a run no executor
               took is failed at once, never left waiting as "queued"
    cancel     the registry's flag (only the owner may set it), which is what a worker obeys wherever
               it runs; then `stop`, the backend's backstop
    prepare    the server started: catch up (`reconcile`), then `warm` so that a first Start trains at
               once (MNIST_WARM_RUNNER=0 turns the warming off)

What each backend says for itself: `start`, `stop`, `warm`, `reconcile` (record what it lost track
of, e.g. a Ray job that ended before its run started) and `places_in_line` (the place of each
waiting run in the queue this executor serves: the local slots, or the cluster's scheduler).
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from typing import Optional, Sequence

from . import registry
from .errors import MnistLabError, RunError, first_line
from .records import RunStatus
from .training import TrainConfig, admit


def warming_wanted() -> bool:
    """MNIST_WARM_RUNNER (default on): whether the server's start gets a worker ready before any Start."""
    return os.environ.get("MNIST_WARM_RUNNER", "1").lower() not in ("0", "false", "no", "off")


class Executor(ABC):
    """Runs queued runs somewhere. Holds no run state: every fact about a run is in the registry."""

    # --- the shared steps -----------------------------------------------------------------------------

    def submit(self, config: dict, owner: Optional[str] = None, root=None, sweep: Optional[str] = None,
               class_code: Optional[str] = None, student: Optional[str] = None) -> str:
        """Queue a config as a run and start it; return the run id.

        The config must parse and be admitted here: a ConfigError naming the field otherwise, and
        nothing is queued. A visitor's run (`owner`) may be refused by the queue caps (RunError).
        """
        config = admit(TrainConfig.from_dict(config)).to_dict()
        run_id = registry.create_run(config, root=root, owner=owner, sweep=sweep, class_code=class_code,
                                     student=student)
        try:
            self.start(run_id, config, root)
        except Exception as exc:  # noqa: BLE001 - a run no executor took must not wait forever as "queued"
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
            registry.finish_run(run_id, RunStatus.FAILED, root=root, error=f"the run could not be started: {reason}")
            raise RunError(f"the run could not be started: {reason}") from None
        return run_id

    def cancel(self, run_id: str, root=None, by: Optional[str] = None) -> None:
        """Ask a run to stop (only its owner may, `by`: registry.request_cancel), then `stop` it."""
        registry.request_cancel(run_id, root=root, by=by)
        self.stop(run_id, root)

    def prepare(self, root=None) -> None:
        """The server started: bring the registry up to date (`reconcile`; a fault is said on stderr and
        left to the next try), then `warm`. While it is behind, `warm` runs even with the warming off:
        the local executor's runner is what keeps trying."""
        try:
            self.reconcile(root)
            behind = False
        except MnistLabError as exc:
            print(f"the runs could not be brought up to date yet: {exc}", file=sys.stderr)
            behind = True
        if behind or warming_wanted():
            self.warm(root)

    # --- what each backend says for itself -------------------------------------------------------------

    @abstractmethod
    def start(self, run_id: str, config: dict, root=None) -> None:
        """A run was queued: see that a worker will take it. Raising fails the run (submit)."""

    @abstractmethod
    def stop(self, run_id: str, root=None) -> None:
        """The cancel flag is set: anything beyond it (the worker obeys the flag wherever it runs)."""

    @abstractmethod
    def warm(self, root=None) -> None:
        """Get ready so that the first Start trains at once."""

    @abstractmethod
    def reconcile(self, root=None) -> list[str]:
        """Record what this executor's workers could not (their outcomes left in files, runs whose job
        ended before they started); return the ids of the runs it ended or recorded."""

    @abstractmethod
    def places_in_line(self, all_runs: Sequence[registry.Run]) -> dict[str, int]:
        """1-based place in this executor's queue of each run that waits there; `all_runs` holds at
        least every live run."""

    @abstractmethod
    def capacity(self) -> Optional[int]:
        """How many runs train at once, when this executor decides it; None when a scheduler does."""

