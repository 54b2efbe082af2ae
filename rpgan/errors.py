"""The exception types the CLI turns into a one-line message: UserError exits 2, RemoteError 1."""


class UserError(Exception):
    """Bad input from the user: a wrong option, a missing or corrupt checkpoint, an unknown
    data set, an impossible configuration. The message is one line and says what to do."""


class RemoteError(Exception):
    """Remote storage failed (unreachable endpoint, refused credentials, a missing bucket while
    writing): one line naming the URI; nothing half-written is left behind."""
