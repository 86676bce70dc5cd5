"""What a catalog holds: counts of images, files, failures and missing images."""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from .catalog import Image, ImageFile


def _count(session: Session, query: Select) -> int:
    return session.scalar(select(func.count()).select_from(query.subquery()))


def catalog_counts(session: Session) -> dict[str, int]:
    """``images``, ``failed`` (files that did not decode), ``missing`` (images whose files are gone), ``files``."""
    return {
        "images": _count(session, select(Image.id)),
        "failed": _count(session, select(ImageFile.id).where(ImageFile.status == "failed")),
        "missing": _count(session, select(Image.id).where(Image.status == "missing")),
        "files": _count(session, select(ImageFile.id)),
    }
