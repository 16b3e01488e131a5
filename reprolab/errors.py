"""The project's exceptions: each carries a message a user can act on."""


class ReprolabError(Exception):
    """Base class: the CLI prints the message and exits non-zero, never a traceback."""


class ConfigError(ReprolabError):
    """params.yaml or the environment holds a value the code cannot use."""


class SourceError(ReprolabError):
    """The upstream data source is missing, unreachable or unreadable."""


class DatasetError(ReprolabError):
    """A dataset file as a whole has the wrong shape or encoding (single bad records are quarantined)."""


class ModelError(ReprolabError):
    """A model cannot be built, loaded or run with the given settings."""
