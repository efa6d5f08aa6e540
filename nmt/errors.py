"""The one exception type users see: the command-line tools print it as one line and exit 2."""


class NmtError(Exception):
    """A problem with the user's input (file, config, checkpoint), stated in one line."""
