"""The one base of errors that reach users with a stable code (photos, recordings)."""

from __future__ import annotations


class CodedError(ValueError):
    """An input that cannot be used; ``code`` is stable and safe to return to API clients."""

    code = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
