"""vlbench: quality and cost of vision and text encoders inside vision-language systems."""

from importlib.metadata import PackageNotFoundError, version

from vlbench.errors import UserError
from vlbench.hookspecs import hookimpl

try:  # pyproject.toml's version, as installed: kept in one place
    __version__ = version("vlbench")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
__all__ = ["UserError", "hookimpl", "__version__"]
