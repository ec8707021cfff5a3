"""posd: the loyalty program at the till."""

__version__ = "0.1.0"
