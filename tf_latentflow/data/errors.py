"""Errors raised by the data layer.

Every problem with benchmark input (a missing directory or file, a truncated or
corrupted file, a pickle that holds anything but plain data, a note outside the
piano range, an empty sequence, a text file that is not UTF-8) is reported as a
`DataError` whose message is one line naming the dataset, the file and, where
there is one, the first bad record. The CLIs print that line and exit non-zero.
"""


class DataError(ValueError):
    """Bad or missing benchmark input; the message is a single line."""


class MissingDataError(DataError, FileNotFoundError):
    """A required directory or file was not found where it was looked for."""
