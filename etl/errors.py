"""The one domain exception. Services raise it for refused state changes and
bad requests; the API renders it as 400/409, the admin as a message, commands
as an error line and a non-zero exit."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400

    def __init__(self, message: str, *, code: str = "invalid", status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        if status_code is not None:
            self.status_code = status_code


class ConflictError(DomainError):
    """The request is valid but clashes with the current state (HTTP 409)."""

    status_code = 409

    def __init__(self, message: str, *, code: str = "conflict"):
        super().__init__(message, code=code)
