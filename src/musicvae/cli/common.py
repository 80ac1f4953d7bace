"""What every Hydra command does before Hydra sees its command line."""

from __future__ import annotations

import sys

from musicvae.cli import CONFIG_DIR, CONFIG_DIR_VARIABLE
from musicvae.config import check_group_choices
from musicvae.errors import UserError, exit_on_user_error


@exit_on_user_error
def check_command_line() -> None:
    """One clear line for a missing configs/ folder or an unknown `group=option` (Hydra's own answer to
    `data=nosuch` is a multi-line report)."""
    if not (CONFIG_DIR / "train.yaml").is_file():
        raise UserError(
            f"no musicvae configs in {CONFIG_DIR}: reinstall the package (its wheel carries them), "
            f"or set {CONFIG_DIR_VARIABLE} to a checkout's configs/ folder"
        )
    check_group_choices(CONFIG_DIR, sys.argv[1:])
