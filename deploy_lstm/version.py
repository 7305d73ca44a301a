"""The library's version: one literal, read by setuptools and written into every artifact."""

__version__ = "0.1.0"
