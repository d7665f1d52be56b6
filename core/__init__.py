"""vlbench: quality and cost of vision and text encoders inside vision-language systems."""

from vlbench.errors import UserError
from vlbench.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["UserError", "hookimpl", "__version__"]
