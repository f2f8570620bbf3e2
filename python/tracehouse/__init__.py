"""tracehouse: an analytics warehouse for production LLM systems."""

__version__ = "0.1.0"
