"""The live read model (mnist_core.live): chart maths, progress, which run to watch, how a run ended."""

import math

import pytest

from mnist_core import live, registry


def make_run(status="running", **fields) -> registry.Run:
    values = dict(id="20260101-000000-abcdef", status=status, config={"model": "lenet5", "epochs": 3},
                  created_at=0.0, started_at=None, finished_at=None, error=None, checkpoint=None,
                  best_val_accuracy=None, test_accuracy=None, test_loss=None, steps=None, total_steps=None,
                  pid=123, host="here", heartbeat=None, cancel_requested=False, owner=None)
    values.update(fields)
    return registry.Run(**values)


# --- smoothing ---------------------------------------------------------------------------------

def test_smoothing_starts_at_the_first_value_not_at_zero():
    # the plain EMA starts from 0 and sags; the debiased one starts where the data starts
    assert live.smooth([2.3, 2.3, 2.3], weight=0.9) == pytest.approx([2.3, 2.3, 2.3])
    assert live.smooth([2.3], weight=0.99)[0] == pytest.approx(2.3)


def test_smoothing_matches_tensorboards_debiased_ema():
    values, w = [4.0, 2.0, 3.0, 1.0], 0.6
    acc, expected = 0.0, []
    for k, v in enumerate(values, start=1):
        acc = w * acc + (1 - w) * v
        expected.append(acc / (1 - w ** k))
    assert live.smooth(values, weight=w) == pytest.approx(expected)


def test_smoothed_loss_follows_a_diverging_start_down_within_a_few_time_constants():
    # lr 10: a huge loss for a few steps, then the loss of guessing (2.3). A linear EMA (alpha 0.05)
    # would still show thousands 100 steps later; in log space it is back near 2.3.
    losses = [1e5] * 5 + [2.3] * 200
    w = live.smoothing_weight(len(losses))
    smoothed = live.smooth(losses, weight=w, log=True)
    assert smoothed[0] == pytest.approx(1e5)
    assert smoothed[60] < 3.0
    assert smoothed[-1] == pytest.approx(2.3, rel=1e-3)


def test_smoothing_passes_non_finite_values_through_without_poisoning_the_rest():
    smoothed = live.smooth([1.0, float("nan"), None, 1.0, float("inf")], weight=0.5, log=True)
    assert smoothed[0] == 1.0 and math.isnan(smoothed[1]) and smoothed[2] is None
    assert smoothed[3] == pytest.approx(1.0) and smoothed[4] == float("inf")


def test_smoothing_weight_grows_with_the_run():
    assert live.smoothing_weight(10) == pytest.approx(0.5)          # a short run is barely smoothed
    assert 0.95 < live.smoothing_weight(2_400) < 0.99
    assert live.smoothing_weight(10**7) == pytest.approx(0.99)      # capped: never a flat line


def test_thinning_keeps_at_most_the_limit_and_always_the_last_row():
    rows = list(range(10_001))
    kept = live.thin(rows, limit=1500)
    assert len(kept) <= 1501 and kept[0] == 0 and kept[-1] == 10_000
    assert live.thin(rows[:100], limit=1500) == rows[:100]


def test_loss_axis_spans_whole_decades_around_the_data():
    assert live.decades([2.3, 0.04]) == [-2, 1]
    assert live.decades([float("nan"), None, 0.0]) == [-2, 1]
    assert live.decades([1e5, 0.5]) == [-1, 5]


# --- progress ----------------------------------------------------------------------------------

def test_progress_line_has_epoch_step_eta_and_speed():
    run = make_run(started_at=100.0, steps=250, total_steps=1000)
    p = live.progress(run, {"step": 250, "epoch": 0.75, "images_per_s": 12345.0}, now=110.0)
    assert p.fraction == pytest.approx(0.25)
    assert p.text == "epoch 0.75 / 3 · step 250 / 1,000 · ETA 30s · 12,345 images/s"


def test_the_panel_and_the_sidebar_tell_one_step_count_written_alike():
    """Seen: "step 1679" in the live panel beside "step 1,661" in the sidebar: the panel's text took the
    newest metric row's step, its bar and the sidebar the run record's, and wrote it without a separator."""
    run = make_run(started_at=100.0, steps=1_661, total_steps=3_000)
    panel = live.progress(run, {"step": 1_650, "epoch": 1.65, "images_per_s": 900.0}, now=200.0)
    assert "step 1,661 / 3,000" in panel.text and "step 1,661" in live.short_progress(run).text
    assert panel.fraction == pytest.approx(1_661 / 3_000) == pytest.approx(run.progress)
    ahead = live.progress(run, {"step": 1_679, "epoch": 1.68, "images_per_s": 900.0}, now=200.0)
    assert "step 1,679 / 3,000" in ahead.text and ahead.fraction == pytest.approx(1_679 / 3_000)


def test_a_waiting_run_shows_its_place_in_line():
    first = make_run(status="running", id="20260101-000000-aaaaaa")
    second = make_run(status="queued", pid=None, id="20260101-000001-bbbbbb", created_at=1.0)
    p = live.progress(second, None, [first, second])
    assert p.fraction == 0 and p.text.startswith("Queued: number 1 in line")
    assert "queued, number 1 in line" in live.short_progress(second, [first, second]).text



def test_a_run_a_free_slot_will_take_is_starting_not_in_line(monkeypatch):
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "2")
    running = make_run(status="running", id="20260101-000000-aaaaaa")
    next_up = make_run(status="queued", pid=None, id="20260101-000001-bbbbbb", created_at=1.0)
    waiting = make_run(status="queued", pid=None, id="20260101-000002-cccccc", created_at=2.0)
    everyone = [running, next_up, waiting]
    assert live.places_in_line(everyone) == {waiting.id: 1}  # one slot is free: next_up takes it
    assert live.progress(next_up, None, everyone).text.startswith("Starting")
    assert "queued, number 1 in line" in live.short_progress(waiting, everyone).text
    assert "queued" not in live.short_progress(next_up, everyone).text

# --- which run to watch ------------------------------------------------------------------------

def test_a_visitor_picks_among_live_runs_and_their_own():
    mine_done = make_run("completed", id="20260101-000000-000001", owner="me", created_at=1)
    theirs_done = make_run("completed", id="20260101-000000-000002", owner="them", created_at=2)
    theirs_live = make_run("running", id="20260101-000000-000003", owner="them", created_at=3)
    mine_live = make_run("queued", id="20260101-000000-000004", owner="me", created_at=4)
    choices = live.watch_choices([mine_done, theirs_done, theirs_live, mine_live], "me")
    assert [r.id for r in choices] == [mine_live.id, theirs_live.id, mine_done.id]  # newest first
    assert live.pick_watched(choices, None, "me") is mine_live
    assert live.pick_watched(choices, theirs_live.id, "me") is theirs_live   # the visitor's pick wins
    assert live.pick_watched(choices, theirs_done.id, "me") is mine_live    # not a choice: the default


def test_a_first_visit_watches_the_newest_run():
    old = make_run("completed", owner="them")
    assert live.watch_choices([old], "me") == [old]
    assert live.watch_choices([], "me") == []


def test_only_the_owner_may_change_a_run_and_cli_runs_are_read_only():
    assert live.can_change(make_run(owner="me"), "me")
    assert not live.can_change(make_run(owner="them"), "me")
    assert not live.can_change(make_run(owner=None), "me")   # started from the CLI: the operator's
    assert not live.can_change(make_run(owner=None), None)


# --- how a run ended ---------------------------------------------------------------------------

def test_a_run_near_chance_ends_with_a_warning_not_a_success():
    run = make_run("completed", test_accuracy=0.1135, started_at=0.0, finished_at=30.0,
                   checkpoint="/srv/app/checkpoints/lenet5-x.safetensors")
    kind, text = live.outcome(run, [])
    assert kind == "warning" and "close to guessing" in text and "11.35%" in text


def test_a_loss_that_went_non_finite_is_flagged():
    run = make_run("completed", test_accuracy=0.9, started_at=0.0, finished_at=5.0)
    metrics = [{"split": "train", "step": 1, "loss": 2.3}, {"split": "train", "step": 2, "loss": float("nan")}]
    kind, text = live.outcome(run, metrics)
    assert kind == "warning" and "step 2" in text


def test_a_good_run_succeeds_with_the_checkpoints_file_name_only():
    run = make_run("completed", test_accuracy=0.9912, best_val_accuracy=0.99, started_at=0.0, finished_at=65.0,
                   checkpoint="/srv/app/checkpoints/lenet5-x.safetensors")
    kind, text = live.outcome(run, [{"split": "train", "step": 1, "loss": 0.1}])
    assert kind == "success"
    assert text == ("Test accuracy **99.12%** (best validation 99.00%) in 1m 05s. "
                    "Checkpoint: `lenet5-x.safetensors`")


def test_no_best_validation_is_claimed_without_a_validation_set():
    run = make_run("completed", test_accuracy=0.99, best_val_accuracy=None, started_at=0.0, finished_at=5.0)
    assert "validation" not in live.outcome(run, [])[1]


def test_errors_shown_to_visitors_have_no_server_paths_and_no_config_names():
    text = live.for_visitor("cannot open the run registry at /srv/app/runs/registry.sqlite: disk I/O error\nTraceback")
    assert text == "cannot open the run registry at registry.sqlite: disk I/O error"
    assert live.for_visitor("train_size: only 100 images remain") == "training images: only 100 images remain"
    failed = make_run("failed", error="batch_size: too big")
    assert live.outcome(failed, [])[1] == "This run failed: batch size: too big"


def test_a_watched_run_stays_a_choice_after_it_ends_even_when_not_yours():
    theirs = make_run("completed", id="20260101-000000-000009", owner="them")
    assert live.watch_choices([theirs, make_run("completed", owner="me", created_at=1)], "me",
                              keep=theirs.id)[-1] is theirs


def test_live_rows_are_topped_up_with_only_the_new_rows_and_none_is_missed():
    table = [{"split": "train", "step": s, "loss": 1.0} for s in range(1, 4)]
    asked = []

    def fetch(run_id, after_step):
        asked.append(after_step)
        return [r for r in table if r["step"] > after_step]

    held = live.RunRows("20260101-000000-abcdef")
    assert [r["step"] for r in held.top_up(fetch)] == [1, 2, 3]
    # the worker writes step 3's validation row after step 3's training row, then step 4
    table += [{"split": "val", "step": 3, "loss": 0.5}, {"split": "train", "step": 4, "loss": 0.9}]
    rows = held.top_up(fetch)
    assert [(r["split"], r["step"]) for r in rows] == [("train", 1), ("train", 2), ("train", 3), ("val", 3),
                                                      ("train", 4)]
    assert asked == [-1, 2]  # the second read starts at the last step held, not at the beginning


def test_the_sidebar_line_shows_the_step_so_a_long_run_visibly_moves():
    run = make_run("running", steps=1234, total_steps=100_000)
    assert live.short_progress(run).text == "lenet5 · running · 1% · step 1,234"
