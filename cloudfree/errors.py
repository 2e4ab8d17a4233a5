"""Errors that reach the user as one line, with the exit code they deserve."""


class CloudfreeError(Exception):
    """A problem with the input data or the environment: one line, exit code 1."""

    exit_code = 1


class UsageError(CloudfreeError):
    """The command was asked for something it cannot do as given: exit code 2."""

    exit_code = 2
