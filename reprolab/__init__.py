"""reprolab: a reproducible research repository that retrains three models every month."""

__version__ = "0.1.0"
