"""User-facing errors: the CLI prints these without a traceback and exits with status 2."""


class TunebridgeError(Exception):
    """A problem with the user's input (file, field, line) that they can fix."""
