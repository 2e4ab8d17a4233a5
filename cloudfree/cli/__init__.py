"""The ``cloudfree`` command: Click commands, shared options, the entry point."""
