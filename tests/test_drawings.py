"""The visitors' drawing set (mnist_core.drawings): every field checked, the giver kept as a hash, the
caps and refusals, storage on SQLite and PostgreSQL (the `registry_db` fixture), the held-out split by
giver, the export and import in MNIST's IDX format, the statistics, evaluation on the set, the CLI,
and a run trained with the drawings mixed in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_core import drawings, registry
from mnist_core.__main__ import main
from mnist_core.checkpoints import load_checkpoint, save_checkpoint
from mnist_core.class_codes import ClassError
from mnist_core.data import idx_bytes, read_idx
from mnist_core.drawings import DrawingRefused, add_drawing, count_drawings, giver_of, list_drawings
from mnist_core.drawings.givers import is_held_out
from mnist_core.drawings.stats import describe, slant, stroke_width
from mnist_core.drawings.strokes import check_picture, check_strokes
from mnist_core.errors import ConfigError
from mnist_core.models import create_model
from mnist_core.registry import schema

BROWSER_A = "A" * 31 + "a"  # owner tokens as the pages make them: 32 url-safe characters
BROWSER_B = "B" * 31 + "b"
STROKES = [[[40, 40, 0], [140.04, 60.55, 16.4], [200, 240, 33]], [[100, 100, 400], [120, 180, 416]]]


def picture(seed: int) -> np.ndarray:
    """A 28x28 float picture in [0,1] as canvas_to_mnist gives, different for every seed."""
    rng = np.random.default_rng(seed)
    out = np.zeros((28, 28), np.float32)
    top, left = rng.integers(2, 10, size=2)
    out[top:top + 14, left:left + 4] = 1.0
    out[rng.integers(0, 28, 6), rng.integers(0, 28, 6)] = rng.random(6).astype(np.float32)
    return out


def give(seed: int, token: str = BROWSER_A, digit: int = 3, **kw) -> int:
    kw.setdefault("pointer", "mouse")
    kw.setdefault("strokes", STROKES)
    return add_drawing(picture(seed), digit, owner=token, **kw)


def tokens(n: int, held_out: bool) -> list[str]:
    """n owner tokens whose givers fall on one side of the held-out split."""
    found = []
    for i in range(10_000):
        token = f"{i:032d}"
        if is_held_out(giver_of(token)) == held_out:
            found.append(token)
            if len(found) == n:
                return found
    raise AssertionError("not enough tokens")


# --- the fields, checked like any visitor input ------------------------------------------------------

def test_strokes_are_kept_rounded_and_a_kept_drawing_checks_again_to_itself():
    kept = check_strokes(STROKES)
    assert kept == [[[40.0, 40.0, 0], [140.0, 60.5, 16], [200.0, 240.0, 33]],
                    [[100.0, 100.0, 400], [120.0, 180.0, 416]]]
    assert check_strokes(kept) == kept
    assert check_strokes(json.dumps(STROKES)) == kept  # or sent as JSON text


@pytest.mark.parametrize("strokes, says", [
    ("not json", "not JSON"),
    ("[[[1, 2, NaN]]]", "not JSON"),
    ("[" * 60_000 + "]" * 60_000, "too long"),
    ("[" * 20_000 + "]" * 20_000, "not JSON"),
    ([], "no strokes"),
    ({"x": 1}, "no strokes"),
    ([[[1, 2, 3]]] * 65, "65 strokes"),
    ([[[1, 2, t] for t in range(1500)], [[1, 2, 1500 + t] for t in range(501)]], "over 2,000 points"),
    ([[]], "stroke 1"),
    ([[[1, 2]]], "point 1 of stroke 1 is not [x, y, t]"),
    ([[[1, 2, 3, 4]]], "is not [x, y, t]"),
    ([[[True, 2, 3]]], "is not [x, y, t]"),
    ([[["1", 2, 3]]], "is not [x, y, t]"),
    ([[[float("nan"), 2, 3]]], "finite"),
    ([[[10 ** 400, 2, 3]]], "finite"),
    ([[[1, 2, 3]], [[281, 2, 4]]], "point 1 of stroke 2 lies outside the 280x280 canvas"),
    ([[[1, -0.5, 3]]], "outside"),
    ([[[1, 2, 30], [1, 3, 29]]], "point 2 of stroke 1 goes back in time"),
    ([[[1, 2, 30]], [[1, 3, 10]]], "goes back in time"),
    ([[[1, 2, -5]]], "goes back in time"),
    ([[[1, 2, 0], [1, 3, 60_001]]], "over 60 s"),
])
def test_malformed_strokes_are_refused_in_one_line_saying_what_is_wrong(strokes, says):
    with pytest.raises(DrawingRefused) as refused:
        check_strokes(strokes)
    message = str(refused.value)
    assert says in message and "\n" not in message and len(message) < 200


_json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=40)


@settings(max_examples=200, deadline=None)
@given(strokes=_json_like, canvas=_json_like)
def test_whatever_a_browser_sends_as_strokes_is_kept_checked_or_refused_in_one_line(strokes, canvas):
    try:
        kept = check_strokes(strokes, canvas)
    except DrawingRefused as refused:
        assert "\n" not in str(refused)
    else:
        assert check_strokes(kept, canvas) == kept


@pytest.mark.parametrize("field, value, says", [
    ("digit", 10, "digit must be a whole number from 0 to 9"),
    ("digit", True, "digit"),
    ("digit", "7", "digit"),
    ("predicted", -1, "the model's answer"),
    ("pointer", "stylus", "mouse, touch, pen"),
    ("pointer", ["mouse"], "mouse, touch, pen"),
    ("canvas", 10 ** 6, "canvas side"),
    ("canvas", float("inf"), "canvas side"),
    ("owner", "short", "owner token"),
    ("owner", None, "owner token"),
])
def test_every_field_of_a_drawing_is_checked_before_the_registry_is_touched(registry_db, field, value, says):
    values = dict(picture=picture(1), digit=3, strokes=STROKES, pointer="mouse", owner=BROWSER_A)
    values[field] = value
    with pytest.raises(DrawingRefused, match=says):
        add_drawing(**values)
    assert count_drawings() == 0


def test_a_class_code_is_checked_as_the_class_page_checks_it(registry_db):
    with pytest.raises(ClassError):
        give(1, class_code="no spaces allowed")
    give(1, class_code="Period-3")
    assert [d.class_code for d in list_drawings(class_code="period-3")] == ["period-3"]


@pytest.mark.parametrize("value, says", [
    (np.zeros((28, 28), np.float32), "blank"),
    (np.full((28, 28), 0.05, np.float32), "blank"),  # a faint smudge below MNIST's ink threshold
    (np.zeros((28, 27), np.float32), "28x28"),
    ([[0.5] * 28] * 28, "28x28"),  # a list, not an image
    (np.full((28, 28), 1.5, np.float32), "between 0 and 1"),
    (np.full((28, 28), np.nan, np.float32), "between 0 and 1"),
    (np.full((28, 28), 200, np.int32), "uint8"),
])
def test_a_blank_or_malformed_picture_is_refused(value, says):
    with pytest.raises(DrawingRefused, match=says):
        check_picture(value)


def test_a_picture_is_kept_as_mnist_keeps_its_images():
    kept = check_picture(np.linspace(0, 1, 784, dtype=np.float32).reshape(28, 28))
    assert kept.dtype == np.uint8 and kept[0, 0] == 0 and kept[-1, -1] == 255


# --- storage, on each database --------------------------------------------------------------------

def test_drawings_given_are_listed_counted_and_filtered(registry_db):
    first = give(1, digit=3, pointer="mouse", predicted=8)
    second = give(2, digit=7, pointer="touch", class_code="period-3")
    third = give(3, BROWSER_B, digit=7, pointer="pen")
    assert [d.id for d in list_drawings()] == [first, second, third]
    assert [d.id for d in list_drawings(newest_first=True, limit=2)] == [third, second]
    assert [d.id for d in list_drawings(digit=7)] == [second, third]
    assert [d.id for d in list_drawings(pointer="pen")] == [third]
    assert [d.id for d in list_drawings(mine=BROWSER_A)] == [first, second]
    assert [d.id for d in list_drawings(class_code="period-3")] == [second]
    assert count_drawings(digit=7, mine=BROWSER_B) == 1

    d = list_drawings(limit=1)[0]
    assert (d.digit, d.predicted, d.pointer, d.canvas, d.class_code) == (3, 8, "mouse", 280, None)
    assert d.strokes == check_strokes(STROKES)
    assert np.array_equal(d.picture, check_picture(picture(1)))
    assert d.given_by(BROWSER_A) and not d.given_by(BROWSER_B) and not d.given_by(None)

    counts = drawings.counts()
    assert counts.total == 3 and counts.by_digit == [0, 0, 0, 1, 0, 0, 0, 2, 0, 0]
    assert counts.by_pointer == {"mouse": 1, "touch": 1, "pen": 1}
    assert drawings.counts(mine=BROWSER_B).by_pointer == {"mouse": 0, "touch": 0, "pen": 1}


def test_the_giver_is_kept_as_a_hash_and_nothing_else_about_them(registry_db):
    give(1, class_code="period-3")
    with registry.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(schema.DRAWINGS))]
        columns = set(schema.DRAWINGS.c.keys())
    assert columns == {"id", "created_at", "digit", "predicted", "pointer", "picture", "picture_key", "strokes",
                       "giver", "class_code"}
    assert rows[0]["giver"] == giver_of(BROWSER_A) != BROWSER_A
    assert not any(BROWSER_A in str(value) for value in rows[0].values())


def test_the_same_picture_is_refused_whoever_gives_it_again(registry_db):
    give(1)
    with pytest.raises(DrawingRefused, match="already in the set"):
        give(1, BROWSER_B, digit=5, strokes=[[[1, 1, 0]]])
    assert count_drawings() == 1


def test_only_the_browser_that_gave_a_drawing_may_remove_it_and_the_operator_any(registry_db):
    mine, theirs = give(1), give(2, BROWSER_B)
    with pytest.raises(DrawingRefused, match=f"drawing {theirs} was given from another browser"):
        drawings.delete_drawing(theirs, by=BROWSER_A)
    drawings.delete_drawing(mine, by=BROWSER_A)
    assert [d.id for d in list_drawings()] == [theirs]
    drawings.delete_drawing(theirs)  # the operator (the CLI)
    assert list_drawings() == []
    with pytest.raises(DrawingRefused, match=f"no drawing {theirs}"):
        drawings.delete_drawing(theirs)
    with pytest.raises(DrawingRefused, match="whole number"):
        drawings.delete_drawing("1; DROP TABLE drawings")


def test_a_browser_is_held_to_its_hourly_drawings_and_everyone_to_the_sets_size(registry_db, monkeypatch):
    monkeypatch.setenv("MNIST_DRAWINGS_PER_HOUR", "2")
    monkeypatch.setenv("MNIST_DRAWINGS_MAX", "3")
    give(1), give(2)
    with pytest.raises(DrawingRefused, match="2 drawings in the last hour"):
        give(3)
    give(3, BROWSER_B)  # another browser still may
    with pytest.raises(DrawingRefused, match="the drawing set is full"):
        give(4, "C" * 32)
    assert count_drawings() == 3


def test_with_drawings_off_nothing_is_added_and_the_set_stays_readable(registry_db, monkeypatch):
    give(1)
    monkeypatch.setenv("MNIST_DRAWINGS", "off")
    with pytest.raises(DrawingRefused, match="MNIST_DRAWINGS=off"):
        give(2)
    assert count_drawings() == 1
    monkeypatch.setenv("MNIST_DRAWINGS", "maybe")
    with pytest.raises(ConfigError, match="MNIST_DRAWINGS must be on or off"):
        give(2)


def test_a_version_2_registry_is_upgraded_to_hold_drawings_with_its_runs_kept(registry_db):
    # The registry as version 2 made it: today's tables but `drawings`, at version 2, with a run in it.
    dialect = sa.dialects.sqlite.dialect() if registry_db.kind == "sqlite" else sa.dialects.postgresql.dialect()
    tables = [t for t in schema.metadata.sorted_tables if t.name != "drawings"]
    ddl = ";\n".join(str(sa.schema.CreateTable(t).compile(dialect=dialect)) for t in tables)
    registry_db.execute_script(ddl + """;
        INSERT INTO schema_version (version) VALUES (2);
        INSERT INTO registry (id) VALUES ('0123456789abcdef');
        INSERT INTO runs (id, created_at, status, config, cancel_requested)
            VALUES ('20250101-120000-abcdef', 1735732800, 'completed', '{"model": "lenet5"}', 0);
    """)
    assert count_drawings() == 0
    assert registry_db.schema_version() == schema.SCHEMA_VERSION == 3
    assert [r.id for r in registry.list_runs()] == ["20250101-120000-abcdef"]
    first, second = give(1), give(2)
    assert second > first and [d.id for d in list_drawings()] == [first, second]
    with pytest.raises(DrawingRefused, match="already in the set"):
        give(1, BROWSER_B)


# --- the held-out part, by giver ------------------------------------------------------------------

def test_the_held_out_part_is_split_by_giver_and_nobody_ever_changes_side():
    givers = [giver_of(f"{i:032d}") for i in range(2_000) for _ in range(3)]  # three drawings each
    train, held = drawings.split_by_giver(givers)
    assert set(np.array(givers)[train]).isdisjoint(np.array(givers)[held])
    assert 0.17 < len(held) / len(givers) < 0.23  # about HELD_OUT of them
    # More givers arrive: everyone already there stays on their side.
    more = givers + [giver_of(f"x{i:031d}") for i in range(500)]
    train2, held2 = drawings.split_by_giver(more)
    assert set(held2[held2 < len(givers)]) == set(held)


def test_the_set_as_arrays_keeps_each_givers_drawings_on_one_side(registry_db):
    trained, held = tokens(3, held_out=False), tokens(2, held_out=True)
    seed = 0
    for token in trained + held:
        for _ in range(2):
            seed += 1
            give(seed, token, digit=seed % 10)
    images, labels, ids = drawings.drawing_set()
    assert images.shape == (10, 28, 28) and images.dtype == np.uint8 and list(labels) == [i % 10 for i in range(1, 11)]
    _, _, train_ids = drawings.drawing_set(part="train")
    _, _, held_ids = drawings.drawing_set(part="held-out")
    assert sorted([*train_ids, *held_ids]) == sorted(ids) and len(held_ids) == 4
    assert {d.id for d in list_drawings() if any(d.given_by(t) for t in held)} == set(held_ids)


# --- export and import ----------------------------------------------------------------------------

def _export_files(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_export_then_import_then_export_gives_the_same_bytes(registry_db, tmp_path, monkeypatch):
    give(1, digit=3, predicted=3, class_code="period-3")
    give(2, digit=7, pointer="touch", strokes=[[[0.04, 279.96, 0]]])
    give(3, BROWSER_B, digit=0, pointer="pen", predicted=6)
    assert main(["drawings", "export", "--out", str(tmp_path / "one")]) == 0
    first = _export_files(tmp_path / "one")
    assert sorted(first) == ["DATASHEET.md", "drawings-images-idx3-ubyte", "drawings-labels-idx1-ubyte",
                             "strokes.jsonl"]
    images, labels = read_idx(tmp_path / "one" / "drawings-images-idx3-ubyte"), \
        read_idx(tmp_path / "one" / "drawings-labels-idx1-ubyte")
    assert images.shape == (3, 28, 28) and list(labels) == [3, 7, 0]
    assert np.array_equal(images[0], check_picture(picture(1)))
    lines = [json.loads(line) for line in first["strokes.jsonl"].decode().splitlines()]
    assert [(x["giver"], x["pointer"], x["predicted"]) for x in lines] == [("g1", "mouse", 3), ("g1", "touch", None),
                                                                           ("g2", "pen", 6)]
    everything = b"".join(first.values()).decode("latin-1")
    for secret in (BROWSER_A, giver_of(BROWSER_A), "period-3"):  # no token, no giver hash, no class code
        assert secret not in everything
    sheet = first["DATASHEET.md"].decode()
    assert "CC0-1.0" in sheet and "no IP address" in sheet and "| mouse | 1 |" in sheet

    # Into an empty registry, and out again.
    monkeypatch.setenv("MNIST_REGISTRY_URL", f"sqlite:///{tmp_path / 'other.sqlite'}")
    assert main(["drawings", "import", str(tmp_path / "one")]) == 0
    assert main(["drawings", "export", "--out", str(tmp_path / "two")]) == 0
    assert _export_files(tmp_path / "two") == first
    # Imported again: every picture is already there.
    assert drawings.import_set(tmp_path / "one").added == 0 and count_drawings() == 3


def test_an_empty_set_exports_and_imports_as_an_empty_set(registry_db, tmp_path):
    assert drawings.export_set(tmp_path / "empty").count == 0
    assert read_idx(tmp_path / "empty" / "drawings-images-idx3-ubyte").shape == (0, 28, 28)
    assert drawings.import_set(tmp_path / "empty").added == 0 and count_drawings() == 0


def _exported(tmp_path, n: int = 2):
    folder = tmp_path / "set"
    for seed in range(1, n + 1):
        give(seed, digit=seed % 10)
    drawings.export_set(folder)
    return folder


@pytest.mark.parametrize("spoil, says", [
    (lambda f: (f / "strokes.jsonl").unlink(), "strokes.jsonl is missing"),
    (lambda f: (f / "drawings-images-idx3-ubyte").write_bytes(b"\x00\x00\x0b\x03junk"), "not an IDX file"),
    (lambda f: (f / "drawings-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([1, 5], np.uint8))),
     "line 2: the digit 2 differs from the label 5"),
    (lambda f: (f / "drawings-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([1], np.uint8))),
     "one label per picture"),
    (lambda f: (f / "strokes.jsonl").write_text((f / "strokes.jsonl").read_text().splitlines()[0] + "\n"),
     "1 lines for 2 pictures"),
    (lambda f: (f / "strokes.jsonl").write_text((f / "strokes.jsonl").read_text().replace("[40.0,40.0,0]",
                                                                                         "[40.0,400.0,0]")),
     "line 1: point 1 of stroke 1 lies outside"),
    (lambda f: (f / "strokes.jsonl").write_text((f / "strokes.jsonl").read_text().replace('"g1"', '"bob"')),
     "line 1: giver must be g1"),
    (lambda f: (f / "strokes.jsonl").write_text((f / "strokes.jsonl").read_text().replace('"pointer"', '"ip"')),
     "line 1: not an object with exactly"),
    (lambda f: (f / "drawings-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((2, 28, 28), np.uint8))),
     "line 1: the drawing is blank"),
])
def test_an_import_with_a_bad_file_is_refused_whole_in_one_line(registry_db, tmp_path, spoil, says):
    folder = _exported(tmp_path)
    for d in list_drawings():
        drawings.delete_drawing(d.id)
    spoil(folder)
    with pytest.raises(DrawingRefused) as refused:
        drawings.import_set(folder)
    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert count_drawings() == 0


def test_an_import_that_would_pass_the_cap_adds_nothing_and_one_that_fits_is_tagged(registry_db, tmp_path,
                                                                                      monkeypatch):
    folder = _exported(tmp_path, n=3)
    drawings.delete_drawing(list_drawings()[0].id)
    monkeypatch.setenv("MNIST_DRAWINGS_MAX", "3")
    give(10)  # 3 held; the import brings one new picture (the two others are already here)
    with pytest.raises(DrawingRefused, match="would hold 4 drawings, over MNIST_DRAWINGS_MAX"):
        drawings.import_set(folder)
    monkeypatch.setenv("MNIST_DRAWINGS_MAX", "4")
    done = drawings.import_set(folder, class_code="visitors-2025")
    assert (done.added, done.already_held, done.licence) == (1, 2, "CC0-1.0")
    assert count_drawings(class_code="visitors-2025") == 1


# --- statistics against MNIST -----------------------------------------------------------------------

def _line(width: int, lean: int = 0) -> np.ndarray:
    """A vertical stroke `width` pixels wide, its top shifted `lean` pixels right of its bottom."""
    out = np.zeros((28, 28), np.uint8)
    for row in range(4, 24):
        left = 12 + round(lean * (23 - row) / 19)
        out[row, left:left + width] = 255
    return out


def test_statistics_read_the_stroke_width_the_slant_and_the_ink_as_drawn():
    thin, thick = _line(2), _line(5)
    widths = stroke_width(np.stack([thin, thick]))
    assert 1.5 < widths[0] < 2.2 and 3.5 < widths[1] < 5.2  # w·L / (L + w), for L = 20
    leaning = slant(np.stack([_line(3, lean=6), _line(3), _line(3, lean=-6)]))
    assert leaning[0] > 10 and abs(leaning[1]) < 1e-6 and leaning[2] < -10
    stats = describe(np.stack([thin, thick, thick]), np.array([1, 7, 7]))
    assert list(stats.count[:8]) == [0, 1, 0, 0, 0, 0, 0, 2]
    assert stats.ink[7] == pytest.approx(100.0) and stats.ink[1] == pytest.approx(40.0) and np.isnan(stats.ink[0])
    assert np.allclose(stats.mean_image[7], thick / 255.0) and not stats.mean_image[0].any()
    assert stats.rows()[0] == {"digit": 0, "count": 0, "ink": None, "stroke width": None, "slant": None}


# --- a model on the set ---------------------------------------------------------------------------

def _checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("mlp-128-64").eval()
    path = save_checkpoint(model, {"config": {"model": "mlp-128-64"}}, tmp_path / "m.safetensors")
    return load_checkpoint(path)[0], path


def test_a_model_on_the_drawings_gives_accuracy_per_digit_confusion_and_confident_mistakes(registry_db, tmp_path):
    from mnist_core.evaluate import evaluate_on_drawings

    model, _ = _checkpoint(tmp_path)
    with pytest.raises(DrawingRefused, match="no drawings yet"):
        evaluate_on_drawings(model)
    for seed in range(12):
        give(seed, BROWSER_A if seed % 2 else BROWSER_B, digit=seed % 10)
    result = evaluate_on_drawings(model)
    p = result.predictions
    assert len(result.ids) == 12 and result.accuracy == pytest.approx((p.labels == p.predicted).mean())
    assert result.confusion().sum() == 12 and [r["support"] for r in result.per_digit()] == [2, 2] + [1] * 8
    wrong = result.mistakes()
    assert all(p.labels[i] != p.predicted[i] for i in wrong)
    assert list(p.confidence[wrong]) == sorted(p.confidence[wrong], reverse=True)


def test_the_cli_lists_evaluates_on_and_deletes_drawings(registry_db, tmp_path, capsys):
    model, path = _checkpoint(tmp_path)
    first = give(1, predicted=4, class_code="period-3")
    give(2, BROWSER_B, digit=8, pointer="pen")
    assert main(["drawings", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 3 and table[1].split()[3:] == ["3", "4", "mouse", "5", "period-3"]
    assert main(["drawings", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["digit"], r["strokes"], r["points"]) for r in rows][0] == (first, 3, 2, 5)
    assert all("giver" not in r for r in rows)

    assert main(["evaluate", str(path), "--on", "drawings"]) == 0
    out = capsys.readouterr().out
    assert "mlp-128-64: accuracy on the drawings" in out and "(2)" not in out and "per digit:" in out

    assert main(["drawings", "delete", str(first)]) == 0
    assert main(["drawings", "delete", str(first)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no drawing {first}"
    assert count_drawings() == 1


# --- training on the drawings ----------------------------------------------------------------------

def test_mixing_in_keeps_the_runs_size_and_never_trains_on_a_held_out_giver(registry_db):
    from mnist_core.training.mixing import mix_in

    trained, held = tokens(2, held_out=False), tokens(2, held_out=True)
    for i, token in enumerate(trained + held):
        give(100 + i, token, digit=9)
    x, y = torch.zeros((1000, 28, 28), dtype=torch.uint8), torch.zeros(1000, dtype=torch.int64)
    mixed_x, mixed_y = mix_in(0.25, x, y, torch.Generator().manual_seed(0))
    assert mixed_x.shape == x.shape and int((mixed_y == 9).sum()) == 250
    train_pictures = {bytes(d.picture) for d in list_drawings() if any(d.given_by(t) for t in trained)}
    assert {bytes(im.numpy()) for im in mixed_x[mixed_y == 9]} == train_pictures


def test_a_run_without_drawings_never_reads_the_set(registry_db, tiny_config, mnist, monkeypatch):
    from mnist_core.training import TrainConfig, mixing, train

    def refuse(*_, **__):
        raise AssertionError("the drawing set was read")

    monkeypatch.setattr(mixing, "drawing_set", refuse)
    result = train(TrainConfig.from_dict(tiny_config()))
    assert result.drawings_accuracy is None and {r["split"] for r in result.history} == {"train", "val", "test"}


def test_a_run_trained_on_drawings_records_its_held_out_accuracy_beside_its_test_accuracy(
        registry_db, tiny_config, mnist, isolated_dirs):
    from mnist_core.data import load_mnist
    from mnist_core.evaluate import evaluate_on_drawings
    from mnist_core.training import TrainConfig
    from mnist_core.worker import execute_run

    with pytest.raises(ConfigError, match="no drawings to train on"):
        from mnist_core.training import train
        train(TrainConfig.from_dict(tiny_config(drawings_weight=0.1)))

    images, labels = load_mnist("test")  # real digits stand in for the visitors' drawings
    givers = tokens(4, held_out=False) + tokens(2, held_out=True)
    for i in range(60):
        add_drawing(images[i].numpy(), int(labels[i]), STROKES, "touch", owner=givers[i % 6])
    run_id = registry.create_run(tiny_config(drawings_weight=0.2))
    run = execute_run(run_id)
    assert run.status == "completed"
    rows = {r["split"]: r for r in registry.get_metrics(run_id) if r["split"] in ("test", "drawings")}
    assert set(rows) == {"test", "drawings"}
    model, meta = load_checkpoint(run.checkpoint)
    held = evaluate_on_drawings(model, part="held-out")
    assert len(held.ids) == 20
    assert meta["metrics"]["drawings_accuracy"] == rows["drawings"]["accuracy"] == pytest.approx(held.accuracy)
    assert meta["metrics"]["test_accuracy"] == run.test_accuracy == rows["test"]["accuracy"]


def test_deploy_md_suggests_drawing_caps_a_class_can_use_and_a_host_can_hold(monkeypatch):
    from harness import deploy_settings
    from mnist_core.drawings.strokes import MAX_STROKES_JSON_BYTES

    for key, value in deploy_settings().items():
        monkeypatch.setenv(key, value)
    suggested = drawings.settings.current()
    assert suggested.enabled and suggested.licence == "CC0-1.0"
    assert suggested.per_hour >= 10  # every digit once an hour, at least
    assert suggested.max_drawings * (28 * 28 + MAX_STROKES_JSON_BYTES) < 2**30  # under 1 GB, however drawn
