"""A run at threads = 0 uses the cores other processes leave free (mnist_core/training/cpu.py)."""

from __future__ import annotations

import torch

from mnist_core.training import cpu
from mnist_core.training.cpu import CHECK_SECONDS, FreeCores


class BusyMachine:
    """A two-core machine whose other processes keep `others` cores busy while this run uses `own`."""

    def __init__(self, others: float, own: float = 2.0):
        self.others, self.own_rate, self.now = others, own, 0.0
        self.applied: list[int] = []

    def machine(self) -> float:
        return (self.others + self.own_rate) * self.now

    def own(self) -> float:
        return self.own_rate * self.now

    def clock(self) -> float:
        return self.now

    def governor(self, threads: int = 2) -> FreeCores:
        return FreeCores(2, threads, self.applied.append, machine=self.machine, own=self.own, clock=self.clock)


def test_a_run_on_a_quiet_machine_keeps_every_core():
    host = BusyMachine(others=0.05)
    governor = host.governor()
    host.now += CHECK_SECONDS
    assert governor.check() == 2 and host.applied == []


def test_a_run_drops_to_the_free_core_when_another_process_holds_one():
    host = BusyMachine(others=0.7)  # a busy process squeezed by our two spinning threads still counts
    governor = host.governor()
    host.now += CHECK_SECONDS
    assert governor.check() == 1 and host.applied == [1]


def test_the_threads_come_back_when_the_other_process_ends():
    host = BusyMachine(others=1.0, own=1.0)
    governor = host.governor(threads=1)
    host.now += CHECK_SECONDS
    assert governor.check() == 1
    host.others = 0.0
    host.now += CHECK_SECONDS
    assert governor.check() == 2 and host.applied == [2]


def test_the_count_is_reconsidered_only_every_few_seconds():
    host = BusyMachine(others=1.0)
    governor = host.governor()
    host.now += CHECK_SECONDS / 4
    assert governor.check() == 2 and host.applied == []


def test_never_fewer_than_one_thread_however_busy():
    host = BusyMachine(others=8.0)
    governor = host.governor()
    host.now += CHECK_SECONDS
    assert governor.check() == 1


def test_without_proc_stat_the_count_stays():
    governor = FreeCores(2, 2, lambda n: None, machine=lambda: None)
    assert governor.check() == 2


def test_the_machine_clock_reads_this_machine():
    first = cpu.machine_busy_seconds()
    assert first is None or first > 0


def test_a_torch_run_at_threads_zero_follows_free_cores(mnist, tiny_config, monkeypatch):
    """Train at threads = 0 with another process holding every core but one: torch runs on one."""
    from mnist_core.training import TrainConfig, train

    monkeypatch.setattr(cpu, "CHECK_SECONDS", 0.0)
    monkeypatch.setattr(cpu.FreeCores, "free", lambda self, others: 1)  # what a busy machine reads as
    monkeypatch.setattr("mnist_core.training.torch_engine.host_cores", lambda: 2)
    monkeypatch.setattr("mnist_core.training.torch_engine.free_now", lambda cores: 2)  # quiet when it started
    counts = []
    config = TrainConfig.from_dict(tiny_config(threads=0, train_size=300, batch_size=100))
    train(config, on_event=lambda row: counts.append(torch.get_num_threads()) if row["split"] == "train" else None)
    assert counts and counts[-1] == 1
