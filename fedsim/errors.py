"""The one exception type for bad user input; the CLI prints it as a one-line error and exits 2."""


class InputError(ValueError):
    """Bad input from a user: a scenario key, a file, a model id, a CLI option.

    The message names the field or file and says what is allowed.
    """
