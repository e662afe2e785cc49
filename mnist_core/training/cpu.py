"""How many CPU threads a run uses when it asks for "all cores" (threads = 0): the cores that are free.

Why not simply one thread per core: PyTorch's OpenMP threads spin while they wait for each other. When
another process holds one of two cores, the thread that shares it runs only part of the time and the
other spins, waiting for it: two threads then take several times as long as one (BENCHMARKS.md,
"Threads on a busy host"). A shared host is busy more often than not, so a run at threads = 0 watches
the machine: every CHECK_SECONDS it reads how much CPU the other processes used (the whole machine's
busy time in /proc/stat, less this process's own) and keeps one thread per core they leave free,
never fewer than one. A run starts with the cores the load average leaves free; a second run, or any other
busy process, takes its threads down within a few seconds, and they come back when it ends.

Where /proc/stat cannot be read (not Linux), the count stays at one thread per core.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

CHECK_SECONDS = 2.0   # how often the count is reconsidered: a few steps of a small run
BUSY_SHARE = 0.5      # a core the others keep busy more than half of the time is not free


def machine_busy_seconds() -> Optional[float]:
    """CPU seconds the whole machine has spent busy since boot (every core summed), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy
    ticks = [int(v) for v in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def own_busy_seconds() -> float:
    """CPU seconds this process has used, every thread summed."""
    t = os.times()
    return t.user + t.system


def free_now(cores: int) -> int:
    """A first guess before any step, from the 1-minute load average (mostly other processes: this
    run has only just started); FreeCores corrects it from /proc/stat after CHECK_SECONDS."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    return max(1, min(cores, cores - int(load + (1 - BUSY_SHARE))))


class FreeCores:
    """Picks a thread count from the cores other processes leave free, at most every CHECK_SECONDS.

    `set_threads` applies a count (torch.set_num_threads in the torch engine); `cores` is what this
    process may use. The clocks are parameters so a test can play a busy machine.
    """

    def __init__(self, cores: int, threads: int, set_threads: Callable[[int], None],
                 machine: Callable[[], Optional[float]] = machine_busy_seconds,
                 own: Callable[[], float] = own_busy_seconds, clock: Callable[[], float] = time.monotonic):
        self.cores, self.threads, self.set_threads = cores, threads, set_threads
        self.machine, self.own, self.clock = machine, own, clock
        self._last = self._sample()

    def _sample(self) -> Optional[tuple[float, float, float]]:
        machine = self.machine()
        return None if machine is None else (self.clock(), machine, self.own())

    def free(self, others_busy_cores: float) -> int:
        """Cores left for this run when the other processes keep `others_busy_cores` cores busy."""
        taken = int(others_busy_cores + (1 - BUSY_SHARE))  # rounds x.5 and above up
        return max(1, min(self.cores, self.cores - taken))

    def check(self) -> int:
        """Reconsider the thread count if CHECK_SECONDS have passed; returns the count in use."""
        if self._last is None or self.cores == 1:
            return self.threads
        now = self.clock()
        if now - self._last[0] < CHECK_SECONDS:
            return self.threads
        sample = self._sample()
        if sample is None:
            return self.threads
        elapsed = sample[0] - self._last[0]
        others = max(0.0, (sample[1] - self._last[1]) - (sample[2] - self._last[2])) / elapsed
        self._last = sample
        threads = self.free(others)
        if threads != self.threads:
            self.set_threads(threads)
            self.threads = threads
        return threads
