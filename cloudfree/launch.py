"""The ``cloudfree`` command's entry point: a Ctrl-C while the command's libraries load (about
half a second, before any work) ends it with one line and exit code 130, like one during the
work, instead of Python's traceback of the interrupted import."""

from __future__ import annotations

import os
import sys


def main() -> None:
    try:
        from cloudfree.cli import main as cli
    except KeyboardInterrupt:
        print("Interrupted (SIGINT) while starting; nothing was done.", file=sys.stderr,
              flush=True)
        # os._exit, not sys.exit: with the interrupt in the later imports, sys.exit(130) was
        # seen to end by SIGINT (-2) all the same (Python's unhandled-interrupt flag)
        os._exit(130)
    cli()
