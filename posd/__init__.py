"""posd: the loyalty program at the till."""

__version__ = "0.2.0"
