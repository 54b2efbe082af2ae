"""The one exception type the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a wrong option, a missing or corrupt checkpoint, an unknown
    data set, an impossible configuration. The message is one line and says what to do."""
