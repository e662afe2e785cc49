"""Home page: renders on a fresh start, reports data, checkpoints and runs."""

from mnist_core import runs
from mnist_core.training import TrainConfig

from apptest_util import messages, open_page


def test_home_renders_status_and_links(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page("app_pages/home.py")
    assert not at.exception, messages(at)
    assert at.title[0].value == "MNIST Lab"
    assert any("MNIST is downloaded" in s.value for s in at.success), messages(at)
    assert any("No run in progress" in i.value for i in at.info)


def test_home_lists_runs_in_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    runs.create_run(TrainConfig(epochs=1).to_dict())  # queued, no worker yet
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
