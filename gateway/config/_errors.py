"""The two errors of configuration: the one start-up reports, and the one validators raise."""

from __future__ import annotations


class ConfigError(Exception):
    """Start-up must stop: the message names each bad field and how to fix it."""


class FieldProblems(ValueError):
    """What a model validator found wrong, field by field: ``(path, message)`` pairs, the path
    relative to the model that raised it (``""`` for the model itself).

    :func:`format_validation_error` lists each under its full path (``kafka.sasl_password_file``),
    like the errors of single fields, rather than under the model that noticed them.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.problems))
