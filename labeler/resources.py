"""Where the folders labeler ships with are: templates, static files, migrations, prompt sets, models.

``templates/``, ``static/``, ``migrations/`` and ``prompt_sets/`` sit at the repository's top
level; a built wheel maps them into the package (``labeler/templates/`` ..., see
``[tool.setuptools]`` in ``pyproject.toml``). ``models/`` is inside the package everywhere.
:func:`resource_dir` finds each through :mod:`importlib.resources`, so a checkout, an editable
install and a wheel install read the same files.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

Resource = Literal["templates", "static", "migrations", "prompt_sets", "models"]


def resource_dir(name: Resource) -> Path:
    """The folder holding one kind of shipped resource, as a real path.

    Alembic and Flask want directories on disk, and labeler is never imported from a zip, so
    the package's :func:`~importlib.resources.files` is a plain folder.
    """
    package = Path(str(files("labeler")))
    installed = package / name
    if installed.is_dir():  # a wheel install: the data lives inside the package
        return installed
    return package.parent / name  # a checkout (editable or not): the repository's top level
