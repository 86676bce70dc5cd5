"""Errors a user can cause. The CLI and the HTTP layer turn them into one clear message."""


class LabelerError(Exception):
    """A problem the user can fix; ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class ModelUnavailable(LabelerError):
    """The model's weights cannot be loaded."""


class CatalogError(LabelerError):
    """The catalog or index is not in a state the command can work with."""


class NotFound(LabelerError):
    """An image, label or other record that does not exist."""
