"""The pipeline's stages, each a command line: `python -m components.<stage> --help`."""

__version__ = "0.1.0"
