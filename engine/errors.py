"""Every exception the project raises on purpose, in one place.

    CyoaError                 base: an expected failure whose message is fit to show a user
    ├── ConfigError           a setting is missing or invalid
    ├── DatasetError          the story or step data cannot be used
    │   ├── InvalidDataError  validation found problems; carries every issue found
    │   └── SourceError       an optional extra data source is missing or unreadable
    ├── TrackingError         the MLflow tracking store or registry failed
    ├── ModelError            the storyteller model cannot be used
    │   ├── ModelNotFoundError   no such registered model, version or alias
    │   ├── ModelLoadError       the artifact is corrupt or incompatible (e.g. another prompt format)
    │   │   └── BaseModelError   a pretrained base is missing, corrupt or changed (says what to install)
    │   └── TrainingError        training cannot start or continue
    ├── MalformedOutputError  a model output does not parse as a scene (carries the reason and the text)
    ├── RejectedOutputError   a model output parsed but failed a check (length, near-copy, blocked word)
    ├── BlockedTextError      text a player typed contains a blocked word
    ├── GameRuleError         a move the rules do not allow now (no such choice, the story has ended...);
    │                         its ``hint`` (``Hint``) is rendered by each frontend in its own words
    │   └── CooldownError     the same move again too soon (says how long to wait)
    ├── StorytellerBusyError  the model's queue is full: try again in a moment
    ├── StorytellerFailedError  the model raised, or answered nothing usable, for this request
    │   └── StorytellerTimeoutError  the model did not answer within its deadline
    ├── DeliveryError         a frontend could not show something (the channel is gone, no access, a 5xx)
    └── StateError            a saved game cannot be read (corrupt, or from a newer cyoa)

Third-party errors are converted at the edge (``raise DatasetError(...) from exc``) so callers only ever
need to catch ``CyoaError`` to tell expected failures from bugs.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class CyoaError(Exception):
    """An expected failure: the message says what went wrong and where."""


class ConfigError(CyoaError):
    """A setting is missing or invalid."""


class DatasetError(CyoaError):
    """The story or step data cannot be used."""


class InvalidDataError(DatasetError):
    """Validation found problems; ``issues`` holds one line per problem, each with its location."""

    def __init__(self, issues: Sequence[object]) -> None:
        self.issues = list(issues)
        count = len(self.issues)
        first = "\n".join(str(issue) for issue in self.issues[:20])
        more = f"\n... and {count - 20} more" if count > 20 else ""
        super().__init__(f"{count} problem(s) found:\n{first}{more}")


class SourceError(DatasetError):
    """An optional extra data source is missing or unreadable."""


class TrackingError(CyoaError):
    """The MLflow tracking store or model registry failed."""


class ModelError(CyoaError):
    """The storyteller model cannot be used."""


class ModelNotFoundError(ModelError):
    """No such registered model, version or alias."""


class ModelLoadError(ModelError):
    """A model artifact is corrupt or incompatible with this version of cyoa."""


class BaseModelError(ModelLoadError):
    """A pretrained base (a package's model file or a local checkpoint) is missing, corrupt or changed."""


class TrainingError(ModelError):
    """Training cannot start or continue."""


class MalformedOutputError(CyoaError):
    """A model output does not parse as a scene."""

    def __init__(self, reason: str, text: str) -> None:
        self.reason = reason
        self.text = text
        super().__init__(f"malformed model output: {reason}")


class RejectedOutputError(CyoaError):
    """A model output parsed but failed a check; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class BlockedTextError(CyoaError):
    """Text a player typed contains a blocked word."""


class Hint(StrEnum):
    """What a player can do about a refused move. The engine names no frontend's commands: each frontend
    renders a hint its own way (the bot as a slash command, the terminal as a key)."""

    START = "start"  # start a game here
    END = "end"  # end the game running here
    CHANNELS = "channels"  # see where games may be played
    MODERATOR = "moderator"  # who counts as a moderator here


class GameRuleError(CyoaError):
    """A move the rules do not allow right now (shown to the player as it is, plus the frontend's rendering
    of ``hint``, if any)."""

    def __init__(self, message: str, hint: Hint | None = None) -> None:
        self.hint = hint
        super().__init__(message)


class StateError(CyoaError):
    """A saved game cannot be read (unknown version, corrupt JSON)."""


class StorytellerBusyError(CyoaError):
    """The model's request queue is full."""


class CooldownError(GameRuleError):
    """The same move again too soon; the message says how long to wait."""


class StorytellerFailedError(CyoaError):
    """The model raised (out of memory, a bug in a writer) or answered nothing for this request. The
    original error is chained and logged where it was converted; the message is fit for players."""


class StorytellerTimeoutError(StorytellerFailedError):
    """The model did not answer within its deadline (a hung generation)."""


class DeliveryError(CyoaError):
    """A frontend could not show something. ``permanent``: it never will (the channel is gone, or the bot may
    not post there); otherwise trying again later may work (a 5xx, a network error)."""

    def __init__(self, message: str, permanent: bool) -> None:
        self.permanent = permanent
        super().__init__(message)
