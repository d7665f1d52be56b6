"""Errors. A :class:`UserError` is the user's to fix: the CLI prints it without a traceback
and exits with status 2. Anything else inside a run becomes an error record."""

from __future__ import annotations


class VlbenchError(Exception):
    """Base of every error vlbench raises on purpose."""


class UserError(VlbenchError):
    """Bad input: a suite, a component name, an option, a file. One paragraph saying the file,
    the key and the fix."""


class SuiteError(UserError):
    """A suite file that does not validate."""


class PluginError(VlbenchError):
    """A plugin that failed to load, registered a taken name, or broke a contract."""


class NonFiniteLossError(VlbenchError):
    """Training produced a NaN or infinite loss."""


class StorageError(VlbenchError):
    """A result could not be saved (disk full, folder gone): the suite stops; earlier records stay."""
