"""NØMADE exporter: collectors, parsers, command runner and metric catalog."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nomade-hpc")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
