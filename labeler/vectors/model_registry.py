"""The model registry: which model a collection uses, its catalog row, and its encoder.

Every vector belongs to one model; the collection's model is recorded in the catalog by the
first ``index`` (:meth:`ModelRegistry.adopt`), so later commands use it without a flag.

The encoder mode is part of a model's identity: ``int8`` vectors get their own catalog row
(``SPEC#int8``), so they are never mixed with fp32 ones (``fp32`` and ``torch`` share one row:
same vectors). The collection's mode is recorded beside its spec; a command that asks for
another mode finds no vectors under it and says so.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store.catalog import Model, Setting
from ..config import Config
from typing import Callable

from ..encoding.encoder import (AUTO_MODE, DEFAULT_SETTING, MODE_SETTINGS, Encoder, check_mode, default_cache_dir,
                                describe_backend, load_encoder, resolve_auto, vector_kind)
from ..encoding.model_spec import DEFAULT_MODEL
from ..errors import CatalogError

MODEL_KEY = "model"
MODE_KEY = "encoder_mode"


def model_key(spec: str, mode: str) -> str:
    """The catalog identity of ``spec``'s vectors in ``mode``: the spec itself for fp32 vectors."""
    kind = vector_kind(mode)
    return spec if kind == "fp32" else f"{spec}#{kind}"


class ModelRegistry:
    """``ModelRegistry(config)``: the model in force and its catalog row. Every method that
    reads the catalog is a method, never a property, and takes the caller's ``session``: one
    operation, one unit of work (the caller opens it with ``collection.session()``)."""

    def __init__(self, config: Config, on_export: Callable[[str], None] | None = None):
        self.config = config
        self._spec: str | None = None
        self._mode: str | None = None
        self.on_export = on_export  # a front end's progress line for a first export

    def stored_spec(self, session: Session) -> str | None:
        """The collection's recorded model spec; None before the first ``index``."""
        row = session.get(Setting, MODEL_KEY)
        return row.value if row else None

    def spec(self, session: Session) -> str:
        """The spec in force: an explicit ``config.model``, else the collection's, else the default.

        Decided on the first call and kept, so one handle never switches models.
        """
        if self._spec is None:
            self._spec = self.config.model or self.stored_spec(session) or DEFAULT_MODEL
        return self._spec

    def stored_mode(self, session: Session) -> str | None:
        """The collection's recorded encoder mode; None before the first ``index`` records one."""
        row = session.get(Setting, MODE_KEY)
        return row.value if row else None

    def mode(self, session: Session) -> str:
        """The mode in force: an explicit ``config.encoder_mode``, else the collection's, else ``auto``
        (:data:`DEFAULT_SETTING`). ``auto`` keeps the collection's mode, and gives a new one int8 or
        fp32 (:func:`resolve_auto`)."""
        if self._mode is None:
            mode = check_mode(self.config.encoder_mode or self.stored_mode(session) or DEFAULT_SETTING, MODE_SETTINGS)
            if mode == AUTO_MODE:
                mode = self.stored_mode(session) or resolve_auto(
                    self.spec(session), self.config.device, self.config.encoder_cache or default_cache_dir(),
                    self.on_export)
            self._mode = check_mode(mode)
        return self._mode

    def key(self, session: Session) -> str:
        """The catalog identity (``models.spec``) of the model and mode in force."""
        return model_key(self.spec(session), self.mode(session))

    def encoder(self, session: Session) -> Encoder:
        """The loaded encoder of the model in force (loaded once per process)."""
        return load_encoder(self.spec(session), self.config.device, self.mode(session),
                            self.config.encoder_cache or default_cache_dir(), self.on_export,
                            self.config.encoder_runtime)

    def backend(self, session: Session) -> dict:
        """Which back end runs the model in force here (:func:`describe_backend`); loads nothing."""
        return describe_backend(self.spec(session), self.mode(session), self.config.device,
                                self.config.encoder_cache or default_cache_dir(), self.config.encoder_runtime)

    def record(self, session: Session, create: bool = True, adopting: bool = False) -> Model | None:
        """The catalog row of the model in force; created (loading the encoder) when asked.

        Only :meth:`adopt` may create the row of a mode other than the collection's.
        """
        key = self.key(session)
        model = session.scalar(select(Model).where(Model.spec == key))
        if model is None and create:
            if not adopting:
                self._check_mode(session)
            enc = self.encoder(session)
            model = Model(spec=key, dim=enc.dim, preprocess=enc.preprocess_info, logit_scale=enc.logit_scale)
            session.add(model)
            session.flush()
        return model

    def adopt(self, session: Session) -> int:
        """Make the model in force the collection's model (in the caller's write ``session``);
        returns its catalog id."""
        model = self.record(session, adopting=True)
        for key, value in ((MODEL_KEY, self.spec(session)), (MODE_KEY, self.mode(session))):
            row = session.get(Setting, key)
            if row is None:
                session.add(Setting(key=key, value=value))
            else:
                row.value = value
        return model.id

    def current_id(self, session: Session) -> int | None:
        """The catalog id of the model in force; None when nothing was embedded with it."""
        model = self.record(session, create=False)
        if model is None:
            self._check_mode(session)
        return model.id if model else None

    def _check_mode(self, session: Session) -> None:
        """Refuse a mode other than the one that made the collection's vectors: never mix them."""
        stored = self.stored_mode(session)
        mode = self.mode(session)
        if stored and self.stored_spec(session) == self.spec(session) and vector_kind(stored) != vector_kind(mode):
            raise CatalogError(
                f"the collection's vectors were made in encoder mode '{stored}', not '{mode}'; "
                f"drop --mode/LABELER_ENCODER_MODE to use '{stored}', or re-embed them: "
                f"manage.py index PATH --mode {mode}")

    def require_id(self, session: Session) -> int:
        """Like :meth:`current_id`, but a collection without vectors of the model is an error."""
        model_id = self.current_id(session)
        if model_id is None:
            raise CatalogError(
                f"no images are embedded with model '{self.spec(session)}' yet; run: manage.py index PATH")
        return model_id

    def dim(self, session: Session, model_id: int) -> int:
        """The vector dimension ``D`` of a catalog model."""
        return session.get(Model, model_id).dim
