"""Command-line plumbing shared by the entry points (run, bench, predict)."""
from __future__ import annotations

import sys

from absl import flags


def parse_or_exit(argv: list[str]) -> list[str]:
    """absl flag parsing that exits with status 2 and one line on any flag error."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        sys.stderr.write(f"error: {error}\nRun with --helpfull to see every flag.\n")
        sys.exit(2)
