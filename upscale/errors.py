"""Errors that reach users: what is wrong, where, and what to do.

Library code raises these; only :mod:`upscale.cli` turns them into a message and
exit code 2. Anything else escaping to the CLI is a bug (exit code 1).
"""

from __future__ import annotations


class UpscaleError(Exception):
    """Base of all expected, user-facing errors.

    Parameters
    ----------
    what : str
        What is wrong, in one sentence.
    where : str, optional
        The file, key path, variable or site concerned.
    fix : str, optional
        What the user can do about it.
    """

    kind = "error"

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.what.rstrip(".")
        if self.where:
            text += f" (in {self.where})"
        text += "."
        if self.fix:
            text += " " + self.fix.rstrip(".") + "."
        return text


class RecipeError(UpscaleError):
    """A recipe does not fit the schema or names something that does not exist."""

    kind = "recipe error"


class CatalogError(UpscaleError):
    """A catalog file or one of its entries is malformed or missing."""

    kind = "catalog error"


class DataError(UpscaleError):
    """Input data are missing, malformed, or in units that cannot be converted."""

    kind = "data error"


class RunDirError(UpscaleError):
    """A run directory is in a state that forbids the requested action."""

    kind = "run directory error"


class BundleError(UpscaleError):
    """A trained model bundle is missing, corrupt or incompatible."""

    kind = "bundle error"
