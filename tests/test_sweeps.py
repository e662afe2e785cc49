"""Sweeps: a spec expanded into runs (grid, random with a seed, seed repeats), the caps, the estimate,
the analysis a page draws and its plain-words summary, and the CLI's `sweep` with tiny real runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mnist_core import sweeps
from mnist_core.errors import ConfigError
from mnist_core.sweeps import SweepSpec
from mnist_core.training import TrainConfig

BASE = dict(model="mlp-128-64", train_size=1000, val_size=500, epochs=1, batch_size=100, threads=1, device="cpu")


def _spec(*params: str, **kw) -> SweepSpec:
    return SweepSpec(BASE, tuple(sweeps.parse_param(p) for p in params), **kw)


def _run(run_id: str, status="completed", test_accuracy=None, owner=None, started=0.0, duration=10.0, steps=10,
         error=None, best=None, **config):
    """A stand-in for a registry record (the fields the sweep code reads)."""
    return SimpleNamespace(id=run_id, status=status, config={**BASE, "seed": 0, **config}, owner=owner,
                           test_accuracy=test_accuracy, best_val_accuracy=best, error=error, steps=steps,
                           duration=duration, created_at=started, is_live=status in ("queued", "running"),
                           sweep="s1")


# --- expansion ---------------------------------------------------------------------------------------

def test_a_grid_sweep_runs_every_combination_once_per_seed():
    planned = sweeps.expand(_spec("lr=0.001,0.003,0.01", "batch_size=64,128", seeds=2))
    assert len(planned) == 3 * 2 * 2
    combos = {(p.config.lr, p.config.batch_size, p.config.seed) for p in planned}
    assert len(combos) == 12 and {s for *_, s in combos} == {0, 1}
    assert planned[0].values == {"lr": 0.001, "batch_size": 64}
    assert all(p.config.model == "mlp-128-64" and p.config.train_size == 1000 for p in planned)


def test_a_learning_rate_range_is_spaced_on_a_log_scale():
    assert sweeps.parse_param("lr=1e-4..1e-1:4").grid() == [0.0001, 0.001, 0.01, 0.1]
    assert sweeps.parse_param("epochs=1..5:3").grid() == [1, 3, 5]  # linear for the others


def test_a_random_sweep_with_the_same_seed_draws_the_same_points():
    first = sweeps.points(_spec("lr=1e-4..1e-1", "optimizer=sgd,adam", random=6, sample_seed=7))
    again = sweeps.points(_spec("lr=1e-4..1e-1", "optimizer=sgd,adam", random=6, sample_seed=7))
    other = sweeps.points(_spec("lr=1e-4..1e-1", "optimizer=sgd,adam", random=6, sample_seed=8))
    assert first == again and first != other and len(first) == 6
    assert all(1e-4 <= p["lr"] <= 1e-1 and p["optimizer"] in ("sgd", "adam") for p in first)


def test_a_value_a_run_cannot_take_is_refused_in_one_line_naming_the_point():
    with pytest.raises(ConfigError) as err:
        sweeps.expand(_spec("lr=0.01,20"))
    message = str(err.value)
    assert message.startswith("learning rate 20: ") and "\n" not in message


@pytest.mark.parametrize("params, said", [
    (("lr=0.1", "batch_size=64", "epochs=1", "optimizer=sgd"), "1 to 3 fields"),
    (("lr=0.1", "lr=0.2"), "varied twice"),
])
def test_a_sweep_varies_one_to_three_different_fields(params, said):
    with pytest.raises(ConfigError, match=said):
        sweeps.points(_spec(*params))


@pytest.mark.parametrize("text, said", [
    ("lr", "NAME=V1,V2"), ("colour=red", "not a training field"), ("lr=fast", "not a number"),
    ("batch_size=64.5", "whole number"), ("seed=1,2", "repeat each"), ("lr=0.1..0.01", "low < high"),
    ("optimizer=sgd..adam", "list of values"), ("weight_decay=0..0.1", "above 0"),
])
def test_a_malformed_param_is_refused_in_one_line(text, said):
    with pytest.raises(ConfigError, match=said):
        sweeps.parse_param(text)


def test_a_demo_refuses_a_sweep_whose_runs_exceed_its_bounds(monkeypatch):
    monkeypatch.setenv("MNIST_DEMO", "1")
    with pytest.raises(ConfigError, match="^epochs 9: epochs: this demo allows at most 5"):
        sweeps.expand(_spec("epochs=1,9"))


# --- caps --------------------------------------------------------------------------------------------

def test_a_sweep_above_the_sweep_cap_is_refused(monkeypatch):
    monkeypatch.setenv("MNIST_MAX_SWEEP_RUNS", "4")
    assert len(sweeps.plan(_spec("lr=0.001,0.01", "batch_size=64,128")).runs) == 4
    with pytest.raises(ConfigError, match="this sweep is 6 runs; at most 4"):
        sweeps.plan(_spec("lr=0.001,0.01,0.1", "batch_size=64,128"))


HUGE = ("lr=" + ",".join(f"{0.0001 * (k + 1):g}" for k in range(22)),          # 22 values
        "weight_decay=" + ",".join(f"{0.001 * (k + 1):g}" for k in range(21)),  # x 21
        "epochs=" + ",".join(str(k + 1) for k in range(21)))                    # x 21, x 5 seeds = 48,510 runs


def test_a_sweep_far_over_the_cap_is_refused_by_its_count_before_any_config_is_built(monkeypatch):
    built = []

    def no_config(*args, **kwargs):
        built.append(args)
        raise AssertionError("a config was built for a sweep its count refuses")

    monkeypatch.setattr(sweeps.TrainConfig, "from_dict", no_config)
    monkeypatch.setattr(sweeps, "admit", no_config)
    spec = _spec(*HUGE, seeds=5)
    for refuse in (sweeps.plan, sweeps.expand):
        with pytest.raises(ConfigError) as err:
            refuse(spec)
        assert str(err.value) == ("this sweep is 48,510 runs; at most 64 are allowed here "
                                  "(fewer values, samples or seeds)")
    assert built == [] and sweeps.count(spec) == 48_510


def test_a_random_sweep_is_counted_as_its_samples_times_its_seeds():
    assert sweeps.count(_spec("lr=1e-4..1e-1", "optimizer=sgd,adam", random=200, seeds=3)) == 600


def test_a_value_list_is_bounded_in_values_and_in_length_before_it_is_read():
    with pytest.raises(ConfigError, match="lr: at most 50 values, got 51"):
        sweeps.parse_param("lr=" + ",".join(f"{0.001 * (k + 1):g}" for k in range(51)))
    forged = "lr=" + "0.1," * 1_000_000  # a widget value a hostile browser can send
    with pytest.raises(ConfigError, match="at most 1,000 characters, got 4,000,003") as err:
        sweeps.parse_param(forged)
    assert "\n" not in str(err.value)


def test_a_visitors_sweep_must_fit_in_their_room_in_the_queue(monkeypatch):
    monkeypatch.setenv("MNIST_MAX_QUEUED_PER_OWNER", "4")
    theirs = [_run("r1", status="running", owner="me"), _run("r2", status="running", owner="someone")]
    assert len(sweeps.plan(_spec("lr=0.001,0.01,0.1"), owner="me", all_runs=theirs).runs) == 3
    with pytest.raises(ConfigError, match="at most 4 queued or running, 1 already"):
        sweeps.plan(_spec("lr=0.001,0.01", "batch_size=64,128"), owner="me", all_runs=theirs)
    sweeps.plan(_spec("lr=0.001,0.01", "batch_size=64,128"), owner=None, all_runs=theirs)  # the operator: no cap


# --- the estimate ------------------------------------------------------------------------------------

def test_the_estimate_uses_the_speed_earlier_runs_of_the_model_reached(monkeypatch):
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "2")
    # 1,000 training images, then 500 validation and 10,000 test images at a third each: 4,500 in 4.5 s
    earlier = [_run("a", duration=4.5)]
    est = sweeps.plan(_spec("lr=0.001,0.01", "batch_size=100,250"), all_runs=earlier).estimate
    assert est.seconds_per_run == pytest.approx(4.5 + sweeps.WORKER_START_SECONDS)
    assert est.total_seconds == pytest.approx(4 * est.seconds_per_run / 2)
    assert est.text().startswith("4 runs × ~6 s ≈ 11 s (2 at a time; mlp-128-64 at 1,000 images/s from 1 earlier run")


def test_one_run_is_estimated_as_a_sweeps_runs_are():
    # 1,000 training images, then 500 validation and 10,000 test images at a third each: 4,500 in 4.5 s
    earlier = [_run("a", duration=4.5)]
    est = sweeps.estimate_one(TrainConfig.from_dict({**BASE, "batch_size": 250}), earlier)
    assert est.total_seconds == pytest.approx(4.5 + sweeps.WORKER_START_SECONDS)
    assert est.text() == "~6 s (mlp-128-64 at 1,000 images/s from 1 earlier run)"


def test_without_an_earlier_run_the_estimate_says_what_it_assumed():
    est = sweeps.plan(_spec("lr=0.001,0.01")).estimate
    assert "no finished mlp-128-64 run to go by: assumed 3,000 images/s" in est.text()


# --- the analysis ------------------------------------------------------------------------------------

def test_the_analysis_gives_mean_and_spread_over_seeds_and_says_where_accuracy_peaks():
    results = {  # lr -> (seed 0, seed 1) test accuracy; at 1.0 the loss went NaN
        0.001: (0.90, 0.92), 0.003: (0.97, 0.95), 0.01: (0.93, 0.93)}
    sweep = [_run(f"r{lr}-{seed}", test_accuracy=acc, best=acc + 0.01, lr=lr, seed=seed)
             for lr, accs in results.items() for seed, acc in enumerate(accs)]
    sweep.append(_run("rbad", status="failed", lr=1.0,
                      error="training diverged: fc1.weight holds values that are not finite (NaN or infinity)"))
    rows = {r.id: [{"split": "val", "step": 5, "accuracy": 0.5}, {"split": "val", "step": 10, "accuracy": 0.8}]
            for r in sweep}
    a = sweeps.analyse(sweep, lambda run_id: rows[run_id])
    assert a.fields == ["lr"] and a.counts == {"completed": 6, "failed": 1}
    peak = next(g for g in a.groups if g.values == {"lr": 0.003})
    assert peak.mean == pytest.approx(0.96) and peak.spread == pytest.approx(0.01414, abs=1e-4)
    first = a.results[0]
    assert (first.best_val_accuracy, first.last_val_accuracy) == (pytest.approx(0.91), 0.8)
    assert a.results[-1].diverged
    text = " ".join(a.summary)
    assert "Accuracy peaks near learning rate 0.003 (96.0%)." in text
    assert "Above learning rate 0.01, training diverges or stays near chance (1)." in text
    assert "seed alone moves test accuracy by up to ±1.4%" in text
    assert "Best: learning rate 0.003, 96.0% test accuracy (mean of 2 seeds)." in text


def test_a_field_that_barely_changes_accuracy_is_said_so_and_a_choice_is_ranked():
    sweep = [_run("a", test_accuracy=0.950, batch_size=64, optimizer="sgd"),
             _run("b", test_accuracy=0.951, batch_size=128, optimizer="sgd"),
             _run("c", test_accuracy=0.980, batch_size=64, optimizer="adam"),
             _run("d", test_accuracy=0.981, batch_size=128, optimizer="adam")]
    text = " ".join(sweeps.analyse(sweep, lambda run_id: []).summary)
    assert "Batch size barely matters here" in text
    assert "adam does best (98.0%), then sgd (95.0%)." in text


def test_a_summary_while_runs_are_still_going_says_it_is_so_far():
    sweep = [_run("a", test_accuracy=0.9, lr=0.001), _run("b", status="running", lr=0.01)]
    assert sweeps.analyse(sweep, lambda run_id: []).summary[0] == "So far (1 of 2 runs ended):"


def test_a_sweep_with_nothing_finished_says_so():
    a = sweeps.analyse([_run("a", status="queued", lr=0.1), _run("b", status="running", lr=0.2)], lambda run_id: [])
    assert a.summary == ["No run has finished yet."] and a.counts == {"queued": 1, "running": 1}


def test_only_the_visitor_who_launched_a_sweep_can_cancel_it_and_cancel_stops_every_run():
    from mnist_core import registry
    from mnist_core.errors import RunError

    ids = [registry.create_run(p.config.to_dict(), owner="me", sweep="sweep-1")
           for p in sweeps.expand(_spec("lr=0.1,0.2"))]
    with pytest.raises(RunError, match="started by someone else"):
        sweeps.cancel("sweep-1", by="someone")
    assert all(registry.get_run(i).status == "queued" for i in ids)
    assert sweeps.cancel("sweep-1", by="me") == 2
    assert all(registry.get_run(i).status == "cancelled" for i in ids)


# --- the command line, with tiny real runs ----------------------------------------------------------

def test_cli_sweep_launches_tagged_runs_and_waits_for_them(cli, mnist, monkeypatch):
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "2")
    done = cli("sweep", "--param", "lr=0.001,0.01", "--model", "mlp-128-64", "--train-size", "1000",
               "--val-size", "500", "--epochs", "1", "--threads", "1", "--device", "cpu", "--wait", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    sweep_id = next(line.split()[1] for line in lines if line.startswith("sweep "))
    from mnist_core import registry

    tagged = registry.list_runs(sweep=sweep_id)
    assert sorted(r.config["lr"] for r in tagged) == [0.001, 0.01]
    assert all(r.status == "completed" and r.sweep == sweep_id for r in tagged)
    assert any(line.startswith("Best: learning rate") for line in lines)
