"""Exceptions that cross module boundaries."""


class UsageError(Exception):
    """A mistake in the command line, the config file or a plugin's options.

    The CLI prints it as one line on stderr and exits with status 2; a plugin
    raises it from ``flashplug_configure`` to refuse a bad setting.
    """


class HTTPError(Exception):
    """Stop handling a request and answer with an error status.

    ``headers`` are added to the error response (for example ``Allow`` on a
    405); ``close`` asks the kernel to close the connection after answering.
    """

    def __init__(self, status, message="", headers=(), close=False):
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = list(headers)
        self.close = close


class StartupError(Exception):
    """The server could not start (or its workers keep dying at start-up).

    The CLI prints it as one line on stderr and exits with status 1; unlike
    :class:`UsageError` the command line may be right, but something the
    server needs at run time (a plugin's start-up, a file) failed.
    """
