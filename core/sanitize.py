"""Text from records made safe for where it is shown: terminals and spreadsheets.

Records are data written by plugins and by whoever can write the results folder; a field may
hold terminal escape sequences or a spreadsheet formula. Records keep what they hold; these
functions clean the copy that is displayed or exported.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls but tab and newline, DEL, and C1 controls (0x9b is a one-byte CSI).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def terminal_text(text: str) -> str:
    """``text`` without control characters (escape sequences lose their ESC and print inert)."""
    return _CONTROL.sub("", text)


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would evaluate (``=``, ``+``, ``-``, ``@``, tab, CR first)
    gets a leading apostrophe (OWASP's advice); numbers and other cells pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
