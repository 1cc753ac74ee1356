"""The one exception type the CLI turns into a one-line message and exit code 2."""


class FetalHCError(Exception):
    """A problem with the user's input (file, flag, data) rather than a bug."""
