"""Errors a user can cause: the CLI prints them as one line and exits with code 2."""


class InputError(ValueError):
    """Bad user input (a prompt, a parameter, a path): reported in one line, never a traceback."""
