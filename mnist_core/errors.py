"""The package's own exception types.

Every error a user can cause (a bad config, a bad upload, missing data) is one of these, with a
one-line message fit to show as it is: pages print it with st.error, the CLI prints it and exits 2.
"""


class MnistLabError(Exception):
    """Base class: a one-line, user-facing message."""


class DataError(MnistLabError):
    """MNIST is missing, corrupt, or could not be fetched."""


class ConfigError(MnistLabError):
    """A TrainConfig field is out of range or unknown."""


class CheckpointError(MnistLabError):
    """A checkpoint cannot be saved or loaded."""


class RunError(MnistLabError):
    """A run does not exist or cannot change state."""


class ImageError(MnistLabError):
    """An uploaded file is not an image we can read safely."""


class BusyError(MnistLabError):
    """Heavy work refused for now: the server, or this visitor, is at its bound (mnist_core.heavy)."""


class DrawingRefused(MnistLabError):
    """A drawing (or a drawing set) the visitors' set does not take: a bad field, blank, a duplicate,
    a cap reached, the set off (mnist_core.drawings)."""


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """An error's own words as one line of at most `limit` characters, fit for a one-line message.

    A SQLAlchemy error gives its database's words (`.orig`), without the statement and link it adds;
    an error with no words gives its type's name.
    """
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0].strip()[:limit] if text else type(orig).__name__


class OnnxRefused(MnistLabError):
    """An ONNX file the lab will not run: too large, not ONNX, or outside what it accepts (onnx_import)."""
