"""Errors that reach the user as one line, with the exit code they deserve."""


class CloudfreeError(Exception):
    """A problem with the input data or the environment: one line, exit code 1.

    The message names Python arguments as ``name=value`` (``name=True`` for a switch) and
    ``params`` lists those names, so that the CLI can put its flags in their place.
    """

    exit_code = 1

    def __init__(self, message: str, *params: str) -> None:
        super().__init__(message)
        self.params = params


class UsageError(CloudfreeError):
    """The command was asked for something it cannot do as given: exit code 2."""

    exit_code = 2
