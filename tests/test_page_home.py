"""Home page: renders on a fresh start, reports data, checkpoints and runs, links every page."""

import pytest

from mnist_core import registry
from mnist_core.training import TrainConfig

from apptest_util import messages, open_page


def test_home_renders_status_and_links(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page("app_pages/home.py")
    assert not at.exception, messages(at)
    assert at.title[0].value == "MNIST Lab"
    assert any("MNIST is downloaded" in s.value for s in at.success), messages(at)
    assert any("No run in progress" in i.value for i in at.info)


@pytest.fixture
def busy_slot(tmp_path, monkeypatch):
    """The only training slot taken by a run this test process stands in for, so a queued run waits
    (and no page visit starts a real worker)."""
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "1")
    run_id = registry.create_run(TrainConfig(model="mlp-50", epochs=1).to_dict())
    registry.mark_running(run_id, total_steps=100)
    registry.add_metrics(run_id, [{"split": "train", "step": 25, "epoch": 0.25, "loss": 1.0, "accuracy": 0.5}])
    yield run_id
    for r in registry.list_runs():
        if r.is_live:
            registry.finish_run(r.id, "cancelled")


def test_home_lists_runs_in_progress(busy_slot):
    at = open_page("app_pages/home.py")
    assert not at.exception, messages(at)
    assert any("1 run(s) in progress" in i.value for i in at.info), [i.value for i in at.info]


def test_home_offers_fetch_when_data_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "nodata"))
    at = open_page("app_pages/home.py")
    assert not at.exception, messages(at)
    assert any("not downloaded" in w.value for w in at.warning)
    assert any(b.label == "Fetch MNIST" for b in at.button)


def test_where_to_go_links_every_other_page(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page("app_pages/home.py")
    assert not at.exception, messages(at)
    links = [e.proto.label for e in at.get("page_link")]
    assert links == ["Dataset", "Train", "Inside the network", "Draw", "Evaluate", "Explain", "Class"]


def test_home_says_how_many_checkpoints_it_does_not_list(isolated_dirs):
    """Seen: Home listed 8 of 18 checkpoints, and nothing said there were 10 more."""
    import shutil
    from pathlib import Path

    committed = Path(__file__).resolve().parent.parent / "checkpoints"
    isolated_dirs["checkpoints"].mkdir(parents=True, exist_ok=True)
    for i in range(14):  # 14 runs' checkpoints beside the committed ones
        for suffix in (".safetensors", ".json"):
            shutil.copy(committed / f"lenet5{suffix}",
                        isolated_dirs["checkpoints"] / f"lenet5-20260101-0000{i:02d}-abcdef{suffix}")
    at = open_page("app_pages/home.py")
    assert not at.exception, messages(at)
    total = 14 + len(list(committed.glob("*.safetensors")))
    assert any(s.value.startswith(f"{total:,} checkpoint(s) ready") for s in at.success), messages(at)
    listing = next(m.value for m in at.markdown if m.value.startswith("- **"))
    assert listing.count("- **") == 8
    assert listing.endswith(f"- and {total - 8:,} more (Evaluate's model cards and every model picker list them)")


def test_home_shows_each_runs_progress_and_a_waiting_runs_place_in_line(busy_slot):
    registry.create_run(TrainConfig(epochs=1).to_dict())  # waits for the busy slot
    at = open_page("app_pages/home.py")
    assert not at.exception, messages(at)
    assert any("2 run(s) in progress" in i.value for i in at.info), [i.value for i in at.info]
    bars = [e.proto.text for e in at.main.get("progress")]
    assert bars == ["mlp-50 · running · 25% · step 25", "lenet5 · queued, number 1 in line · 0%"], bars


def test_a_class_code_typed_on_home_joins_the_class_and_opens_its_page(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page("app_pages/home.py")
    at.text_input(key="home_class_code").input(" Period-3 ")
    at.button(key="home_join").click().run()
    assert not at.exception, messages(at)
    assert at.title[0].value == "Class" and at.subheader[0].value == "Class period-3"
    at.switch_page("app_pages/home.py").run()
    assert any(m.value.startswith("You are in class **period-3**") for m in at.markdown)


def test_a_bad_class_code_on_home_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page("app_pages/home.py")
    at.text_input(key="home_class_code").input("a b")
    at.button(key="home_join").click().run()
    assert not at.exception, messages(at)
    assert [e.value for e in at.error] == ["A class code is 3 to 32 letters, digits and single dashes, like period-3."]
    assert at.title[0].value == "MNIST Lab"
