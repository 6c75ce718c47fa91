"""The one exception type for bad user input; the CLI prints it as a one-line error and exits 2."""


class InputError(ValueError):
    """Bad input from a user: a scenario key, a file, a model id, a CLI option.

    The message names the field or file and says what is allowed.
    """


class StuckConnectionError(InputError):
    """An InputError raised while a connection attempt (Ray's ``ray.init`` in a thread) is still running and
    cannot be stopped. The CLI prints its line and leaves at once (``os._exit``): the interpreter's normal
    shutdown would run Ray's exit handler against the half-made connection, which can abort the process
    (``std::bad_alloc``, exit -6) after the error was printed."""
