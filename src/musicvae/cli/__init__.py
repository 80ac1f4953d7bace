"""The commands: each module's `main()` is what `scripts/<name>.py` and the console script
`musicvae-<name>` run (train, sample, evaluate, attributes, prepare-data, compare, render, benchmark).
They read the command line, compose the Hydra config from `configs/`, and call the package that does the
job; a user's mistake ends in one `error: ...` line (exit code 2), never a traceback.

The top floor: nothing in musicvae imports from here.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_DIR_VARIABLE = "MUSICVAE_CONFIG_DIR"


def config_dir() -> Path:
    """The configs/ folder: $MUSICVAE_CONFIG_DIR if set; else the one an installed wheel carries
    (musicvae/configs, put there at build time from the repository's configs/); else the checkout's
    (src/musicvae/cli → configs/), what an editable install (`pip install -e .`, the Makefile's) finds."""
    env = os.environ.get(CONFIG_DIR_VARIABLE)
    if env:
        return Path(env).resolve()
    package = Path(__file__).resolve().parents[1]
    packaged = package / "configs"
    return packaged if packaged.is_dir() else package.parents[1] / "configs"


CONFIG_DIR = config_dir()
