"""The package list, found rather than listed: `core/` installs as `vlbench` and `plugins/` as
`vlbench.plugins`, a layout pyproject.toml's `packages.find` cannot rename, so every
subpackage under either folder (a new one too) is found here. Everything else is in
pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[
        "vlbench",
        *(f"vlbench.{name}" for name in find_packages("core")),
        "vlbench.plugins",
        *(f"vlbench.plugins.{name}" for name in find_packages("plugins")),
    ],
)
