"""Errors that mean the user gave bad input (file, dataset, value), not a bug."""


class InputError(ValueError):
    """Bad input: the message names the file, dataset, key or value and what was expected.

    The command-line interface prints the message on one line and exits with code 2.
    """

    user_error = True
