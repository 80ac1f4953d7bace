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
    """The configs/ folder: $MUSICVAE_CONFIG_DIR if set, else the checkout's (src/musicvae/cli → configs/),
    which an editable install (`pip install -e .`, what the Makefile does) finds wherever it is run from."""
    env = os.environ.get(CONFIG_DIR_VARIABLE)
    return Path(env).resolve() if env else Path(__file__).resolve().parents[3] / "configs"


CONFIG_DIR = config_dir()
