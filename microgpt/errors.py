"""The two kinds of error a user can cause, so the CLI can answer each in one line.

Library code raises these with a message that says what is wrong and what to do;
`microgpt.cli` prints the message (no traceback unless --debug) and exits with
`exit_code`.
"""


class MicrogptError(Exception):
    """Something about the user's files or data is wrong (exit code 1)."""

    exit_code = 1


class UsageError(MicrogptError):
    """An option or argument makes no sense (exit code 2, like argparse)."""

    exit_code = 2
