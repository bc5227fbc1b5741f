"""Error types with messages that name the offending file and what is wrong with it."""

from __future__ import annotations


class Mllm3dError(Exception):
    """Base class of every error this project raises on purpose."""


class BadInputError(Mllm3dError, ValueError):
    """An input file or value is missing, malformed or inconsistent."""


class StoreError(Mllm3dError):
    """The pseudo-label store is missing, foreign, corrupt or of an unsupported schema."""


class UnknownSceneError(Mllm3dError, KeyError):
    """A scene id that the scene source or the store does not contain."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""
