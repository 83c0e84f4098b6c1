"""Where things are: the project checkout and the one output folder."""

from __future__ import annotations

import os
from pathlib import Path

#: The checkout this package was installed from (editable install).
PROJECT = Path(__file__).resolve().parents[2]


def out_dir() -> Path:
    """All build outputs, logs and target state live below this folder."""
    return Path(os.environ.get("GCMA_OUT", PROJECT / "out")).resolve()


def logs_dir() -> Path:
    return out_dir() / "logs"


def ccache_dir() -> Path:
    """Kept outside the checkout so fresh clones on this machine share it."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gcma" / "ccache"
    return Path(os.environ.get("GCMA_CCACHE_DIR", default))


def cache_dir() -> Path:
    """Downloads (guest packages) that outlive a clone."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gcma"
    return Path(os.environ.get("GCMA_CACHE_DIR", default))
