"""Exit codes of the h4backup client and the one exception that carries them to `main`."""

from __future__ import annotations

from typing import Any

OK = 0
FAILED = 1
USAGE = 2
NOT_AUTHENTICATED = 3
# The same failure the other way round: the server could not be authenticated.
SERVER_NOT_TRUSTED = NOT_AUTHENTICATED
NOT_FOUND = 4
UNREACHABLE = 5
INTERRUPTED = 130
STDOUT_CLOSED = 141

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    the operation failed (task FAILED, SHA-512 mismatch, request refused)
  2    usage error (bad arguments, no password source)
  3    not logged in, session expired or authentication failed; or the server's
       certificate is not trusted or does not match --fingerprint
  4    not found (backup, task, or a route this server does not offer)
  5    server or network unreachable, or a server-side error (HTTP 5xx)
  130  interrupted (Ctrl-C); a server task keeps running: see `h4backup task show ID --wait`
  141  standard output closed early (e.g. piped into `head`)
"""


class ClientError(Exception):
    """A failure the user should read as one line, ending the run with `exit_code`."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_for_status(status: int) -> int:
    """How an HTTP error status reads to a shell script."""
    if status in (401, 403):
        return NOT_AUTHENTICATED
    if status == 404:
        return NOT_FOUND
    if status >= 500:
        return UNREACHABLE
    return FAILED


def describe_api_error(error: Any) -> str:
    """`code: msg` of an ApiError; anything else as it is."""
    if isinstance(error, dict) and ("code" in error or "msg" in error):
        return f"{error.get('code') or 'Error'}: {error.get('msg') or ''}".rstrip()
    return str(error)
