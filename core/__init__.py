"""vlbench: quality and cost of vision and text encoders inside vision-language systems."""

from vlbench.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
