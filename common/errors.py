"""The two kinds of failure: the caller's (UserError) and ours (everything else).

A UserError carries a message written for the person who can fix it and the HTTP
status a server answers with. Training turns it into `ClientError: ...` in
`output/failure` and exit code 1; any other exception is an `AlgorithmError`
(exit code 2) whose traceback goes to the log only.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad hyperparameters, data, configuration or request: the caller can fix it."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class UnsupportedContentType(UserError):
    status = 415


class UnsupportedAccept(UserError):
    status = 406


class PayloadTooLarge(UserError):
    status = 413


class NoContent(UserError):
    """Answered with its status and an empty body (XGBoost's 204 for an empty request)."""

    status = 204


def join_problems(problems: list[str]) -> str:
    """One sentence per problem, in the order found."""
    return " ".join(p if p.endswith((".", "?")) else p + "." for p in problems)
