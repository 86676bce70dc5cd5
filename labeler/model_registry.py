"""The model registry: which model a collection uses, its catalog row, and its encoder.

Every vector belongs to one model; the collection's model is recorded in the catalog by the
first ``index`` (:meth:`ModelRegistry.adopt`), so later commands use it without a flag.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import db
from .catalog import Model, Setting
from .config import Config
from .encoder import DEFAULT_MODEL, Encoder, load_encoder
from .errors import CatalogError

MODEL_KEY = "model"


class ModelRegistry:
    """``ModelRegistry(config)``: the model in force and its catalog row. Every method that
    reads the catalog is a method, never a property."""

    def __init__(self, config: Config):
        self.config = config
        self._spec: str | None = None

    def stored_spec(self) -> str | None:
        """The collection's recorded model spec; None before the first ``index``."""
        with db.session_scope(self.config) as s:
            row = s.get(Setting, MODEL_KEY)
            return row.value if row else None

    def spec(self) -> str:
        """The spec in force: an explicit ``config.model``, else the collection's, else the default.

        Decided on the first call and kept, so one handle never switches models.
        """
        if self._spec is None:
            self._spec = self.config.model or self.stored_spec() or DEFAULT_MODEL
        return self._spec

    def encoder(self) -> Encoder:
        """The loaded encoder of the model in force (loaded once per process)."""
        return load_encoder(self.spec(), self.config.device)

    def record(self, session: Session, create: bool = True) -> Model | None:
        """The catalog row of the model in force; created (loading the encoder) when asked."""
        spec = self.spec()
        model = session.scalar(select(Model).where(Model.spec == spec))
        if model is None and create:
            enc = self.encoder()
            model = Model(spec=spec, dim=enc.dim, preprocess=enc.preprocess_info, logit_scale=enc.logit_scale)
            session.add(model)
            session.flush()
        return model

    def adopt(self) -> int:
        """Make the model in force the collection's model; returns its catalog id."""
        with db.session_scope(self.config) as s:
            model = self.record(s)
            row = s.get(Setting, MODEL_KEY)
            if row is None:
                s.add(Setting(key=MODEL_KEY, value=self.spec()))
            else:
                row.value = self.spec()
            return model.id

    def current_id(self) -> int | None:
        """The catalog id of the model in force; None when nothing was embedded with it."""
        with db.session_scope(self.config) as s:
            model = self.record(s, create=False)
            return model.id if model else None

    def require_id(self) -> int:
        """Like :meth:`current_id`, but a collection without vectors of the model is an error."""
        model_id = self.current_id()
        if model_id is None:
            raise CatalogError(
                f"no images are embedded with model '{self.spec()}' yet; run: manage.py index PATH")
        return model_id

    def dim(self, model_id: int) -> int:
        """The vector dimension ``D`` of a catalog model."""
        with db.session_scope(self.config) as s:
            return s.get(Model, model_id).dim
