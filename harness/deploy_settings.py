"""The settings DEPLOY.md tells a host to use, read from DEPLOY.md itself.

    deploy_settings() -> {"MNIST_DEMO": "1", "MNIST_MAX_EPOCHS": "3", ...}

They are the `KEY = "value"` lines of its Secrets block (the comments after them dropped). The tests
that check the forms and presets fit a host's bounds and the benchmarks that measure a hosted demo
both read them here, so neither can drift from the document a host follows.
"""

from __future__ import annotations

import re
from pathlib import Path

DEPLOY_MD = Path(__file__).resolve().parent.parent / "DEPLOY.md"


def deploy_settings(path: Path = DEPLOY_MD) -> dict[str, str]:
    """The `KEY = "value"` lines of DEPLOY.md's Secrets block (up to the next `## ` heading)."""
    text = Path(path).read_text()
    start = text.index("Secrets")
    block = text[start:text.index("\n## ", start)]
    return dict(re.findall(r'^\s+([A-Z][A-Z0-9_]*) = "([^"]*)"', block, flags=re.MULTILINE))
