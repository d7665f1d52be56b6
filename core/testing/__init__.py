"""Conformance kit for plugin authors: contract tests and mocks (pytest plugin)."""
