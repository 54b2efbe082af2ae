"""The exception types the CLI turns into a one-line message: UserError exits 2, RemoteError 1."""


class UserError(Exception):
    """Bad input from the user: a wrong option, a missing or corrupt checkpoint, an unknown
    data set, an impossible configuration. The message is one line and says what to do."""


class RemoteError(Exception):
    """A failure outside this process, not of the user's input: remote storage (an unreachable
    endpoint, refused credentials, a missing bucket while writing) or a Ray worker lost past its
    retries. One line naming what failed; nothing half-written is left behind."""
