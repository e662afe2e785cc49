"""Classes: codes and names as visitors type them, runs tagged with a class, the leaderboard, the CSV."""

import csv
import io

import pytest

from mnist_core import classes, registry
from mnist_core.classes import ClassError


@pytest.mark.parametrize("typed, stored", [("period-3", "period-3"), ("  Period-3 ", "period-3"),
                                           ("7b", None), ("abc", "abc"), ("x" * 32, "x" * 32), ("x" * 33, None),
                                           ("-period", None), ("period-", None), ("per--iod", None),
                                           ("period 3", None), ("période", None), ("a/b", None),
                                           ("period-3\n", "period-3"), ("", None), (None, None), (3, None)])
def test_a_class_code_is_a_short_slug_or_refused_in_one_line(typed, stored):
    if stored is None:
        with pytest.raises(ClassError) as err:
            classes.check_code(typed)
        assert "\n" not in str(err.value) and "period-3" in str(err.value)
    else:
        assert classes.check_code(typed) == stored


def test_a_new_code_keeps_the_teachers_words_and_adds_a_part_nobody_guesses():
    a, b = classes.new_code("Period 3"), classes.new_code("Period 3")
    assert a.startswith("period-3-") and b.startswith("period-3-") and a != b
    assert classes.check_code(a) == a
    assert classes.check_code(classes.new_code("!!!" + "x" * 80))  # whatever the prefix, a valid code


@pytest.mark.parametrize("typed, shown", [
    ("Ada", "Ada"), ("  Ada   Lovelace ", "Ada Lovelace"), ("Ada\nLovelace", "Ada Lovelace"),
    ("Ada\x00\x07\x1b[31m", "Ada[31m"), ("\u202eevil", "evil"), ("zero\u200bwidth", "zerowidth"),
    ("Zoë 🦊", "Zoë 🦊"), ("x" * 100, "x" * classes.NAME_MAX)])
def test_a_display_name_is_stripped_of_control_characters_and_capped(typed, shown):
    assert classes.clean_name(typed) == shown


@pytest.mark.parametrize("typed", ["", "   ", "\n\t", "\u200b\u202e", None])
def test_an_empty_display_name_is_refused_in_one_line(typed):
    with pytest.raises(ClassError, match="display name"):
        classes.clean_name(typed)


# --- runs in a class ------------------------------------------------------------------------------

def _run(tiny_config, code=None, student=None, owner=None, accuracy=None, **settings):
    run_id = registry.create_run(tiny_config(**settings), owner=owner, class_code=code, student=student)
    if accuracy is not None:
        registry.mark_running(run_id, total_steps=10)
        registry.finish_run(run_id, "completed", test_accuracy=accuracy, best_val_accuracy=accuracy)
    return run_id


def test_a_class_shows_its_own_runs_and_nothing_of_another_class(tiny_config):
    mine = _run(tiny_config, "period-3", "Ada", owner="a" * 32)
    _run(tiny_config, "period-4", "Bob", owner="b" * 32)
    _run(tiny_config)  # outside any class
    shown = classes.class_runs("Period-3")
    assert [r.id for r in shown] == [mine]
    assert (shown[0].class_code, shown[0].student) == ("period-3", "Ada")
    assert classes.class_runs("period-5") == []
    with pytest.raises(ClassError):
        classes.class_runs("not a code")


def test_the_leaderboard_ranks_each_students_best_run_with_its_settings(tiny_config):
    ada, bob, cy = "a" * 32, "b" * 32, "c" * 32
    _run(tiny_config, "pd-3", "Ada", ada, accuracy=0.91, lr=0.01)
    best_ada = _run(tiny_config, "pd-3", "Ada", ada, accuracy=0.95, lr=0.003, batch_size=64)
    _run(tiny_config, "pd-3", "Ada", ada)  # still queued: not her best
    best_bob = _run(tiny_config, "pd-3", "Bob", bob, accuracy=0.97, model="mlp-50")
    _run(tiny_config, "pd-3", "Cy", cy)  # nothing finished yet
    board = classes.leaderboard(classes.class_runs("pd-3"))
    assert [(row["rank"], row["student"], row["test_accuracy"], row["runs"]) for row in board] == [
        (1, "Bob", 0.97, 1), (2, "Ada", 0.95, 3), (None, "Cy", None, 1)]
    assert board[0]["run"] == best_bob and board[0]["model"] == "mlp-50"
    assert (board[1]["run"], board[1]["lr"], board[1]["batch_size"]) == (best_ada, 0.003, 64)
    assert all("a" * 32 not in str(row.values()) for row in board)  # owner tokens never shown


def test_two_students_who_chose_the_same_name_keep_their_own_rows(tiny_config):
    _run(tiny_config, "pd-3", "Sam", "a" * 32, accuracy=0.9)
    _run(tiny_config, "pd-3", "Sam", "b" * 32, accuracy=0.8)
    board = classes.leaderboard(classes.class_runs("pd-3"))
    assert [(row["student"], row["test_accuracy"]) for row in board] == [("Sam", 0.9), ("Sam (2)", 0.8)]


def test_the_class_csv_has_every_run_and_no_formula_a_spreadsheet_would_run(tiny_config):
    _run(tiny_config, "pd-3", "=HYPERLINK(\"http://x\")", "a" * 32, accuracy=0.93)
    _run(tiny_config, "pd-3", "Bob", "b" * 32)
    _run(tiny_config, "pd-4", "Other", "c" * 32, accuracy=0.99)
    rows = list(csv.DictReader(io.StringIO(classes.runs_csv(classes.class_runs("pd-3")))))
    assert [row["student"] for row in rows] == ["Bob", "'=HYPERLINK(\"http://x\")"]  # newest first
    assert rows[1]["test_accuracy"] == "0.93" and rows[1]["status"] == "completed" and rows[0]["status"] == "queued"
    assert rows[1]["model"] == "mlp-128-64" and rows[1]["lr"] == "0.003"
    assert "owner" not in rows[0] and "Other" not in classes.runs_csv(classes.class_runs("pd-3"))


def test_the_class_csv_has_no_float_noise_in_its_numbers(tiny_config):
    _run(tiny_config, "pd-3", "Ada", "a" * 32, accuracy=0.1 + 0.2, lr=0.013000000000000012)
    (row,) = csv.DictReader(io.StringIO(classes.runs_csv(classes.class_runs("pd-3"))))
    assert row["test_accuracy"] == "0.3" and row["lr"] == "0.013"


def test_the_class_chart_has_an_axis_per_setting_students_varied_and_a_line_per_finished_run(tiny_config):
    ada = _run(tiny_config, "pd-3", "Ada", "a" * 32, accuracy=0.95, lr=0.01)
    bob = _run(tiny_config, "pd-3", "Bob", "b" * 32, accuracy=0.9, lr=0.001, optimizer="sgd")
    _run(tiny_config, "pd-3", "Cy", "c" * 32)  # not finished: no line
    fields, rows = classes.parallel_rows(classes.class_runs("pd-3"))
    assert fields == ["student", "optimizer", "lr"]
    assert rows == [{"student": "Ada", "optimizer": "adamw", "lr": 0.01, "test accuracy": 0.95, "run": ada},
                    {"student": "Bob", "optimizer": "sgd", "lr": 0.001, "test accuracy": 0.9, "run": bob}]


def test_a_browser_remembers_its_class_and_name_and_a_forged_cookie_is_no_membership():
    value = classes.membership_cookie("period-3", "Zoë \"<b>\"; x=1")
    assert all(ch.isalnum() or ch in "%-._~" for ch in value)  # nothing that ends a cookie or a script string
    assert classes.read_membership_cookie(value) == ("period-3", "Zoë \"<b>\"; x=1")
    assert classes.membership_cookie(None, "Ada") == ""
    forged = [None, "", "not json", "%7B%7D", "%5B1%5D", classes.membership_cookie("../etc", "Ada"),
              '{"code": "period-3\\nSet-Cookie"}']
    assert [classes.read_membership_cookie(v) for v in forged] == [(None, None)] * len(forged)
    assert classes.read_membership_cookie(classes.membership_cookie("period-3", "\u200b")) == ("period-3", None)
