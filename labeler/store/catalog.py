"""The catalog: SQLAlchemy 2 models for images, their files, models, vectors, labels and reviews.

The schema is created only by the Alembic migrations in ``migrations/``. Nothing here is
SQLite-specific, so the same models run on PostgreSQL.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    and_,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Seconds(TypeDecorator):
    """A UTC datetime to the second; SQLite stores it as seconds since 1970, an integer of 4 bytes
    where the text form takes 19 or 26 (migration 0008). Other databases keep their own timestamp.

    For a column written on every label, where a million images make eight million of them."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        return dialect.type_descriptor(Integer() if dialect.name == "sqlite" else DateTime())

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | int | None:
        if value is None or dialect.name != "sqlite":
            return value
        return calendar.timegm(value.utctimetuple())  # a naive value is UTC, as utcnow() makes it

    def process_result_value(self, value, dialect) -> datetime | None:
        if value is None or dialect.name != "sqlite":
            return value
        if isinstance(value, str):  # text someone else wrote: SQLite keeps whatever it is given
            return datetime.fromisoformat(value)
        return datetime.fromtimestamp(value, timezone.utc).replace(tzinfo=None)


MAX_ID = 2**63 - 1  # ids are 64-bit integers: a larger number names nothing in the catalog


class Base(DeclarativeBase):
    pass


class Image(Base):
    """One distinct content (by SHA-256). The same bytes at two paths are one image."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)  # bytes
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    # ok: at least one path exists; missing: every known path is gone
    status: Mapped[str] = mapped_column(String(16), default="ok", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    files: Mapped[list["ImageFile"]] = relationship(back_populates="image", order_by="ImageFile.id")

    @property
    def path(self) -> str | None:
        """The first present path, else the first known one."""
        present = [f.path for f in self.files if f.status == "ok"]
        return present[0] if present else (self.files[0].path if self.files else None)


class ImageFile(Base):
    """A path seen on disk. Failed files have no image, only a reason."""

    __tablename__ = "image_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="ok", index=True)  # ok | failed | missing
    error: Mapped[str | None] = mapped_column(Text)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    image: Mapped[Image | None] = relationship(back_populates="files")


class Model(Base):
    """An embedding model. Vectors of two models are never mixed."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    spec: Mapped[str] = mapped_column(String(1024), unique=True)
    dim: Mapped[int] = mapped_column(Integer)
    preprocess: Mapped[dict] = mapped_column(JSON, default=dict)
    logit_scale: Mapped[float] = mapped_column(Float, default=100.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Embedding(Base):
    """A unit-normalised float32 vector per image and model, kept so the index can be rebuilt."""

    __tablename__ = "embeddings"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Setting(Base):
    """Collection-wide key/value settings, such as the collection's model spec."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class PromptSetRecord(Base):
    """A version of a prompt set as it was used: name, version, content hash and source."""

    __tablename__ = "prompt_sets"
    __table_args__ = (UniqueConstraint("name", "content_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256), index=True)
    version: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(String(4096))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptEmbedding(Base):
    """Cache of encoded prompt texts, so a prompt is never encoded twice for a model."""

    __tablename__ = "prompt_embeddings"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    text_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    # A search text's last use (seconds since 1970), for dropping the least recently used past
    # LABELER_QUERY_CACHE_TEXTS; None for a prompt's text, which is kept.
    query_used_at: Mapped[float | None] = mapped_column(Float, index=True)


class User(Base):
    """An account. A session cookie is good only while it carries the user's ``session_generation``:
    logout, a new password and disabling bump it, which ends every session of the user at once."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(512))
    role: Mapped[str] = mapped_column(String(16), default="reviewer")  # reviewer | admin
    api_token_hash: Mapped[str | None] = mapped_column(String(128), index=True)
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    disabled_at: Mapped[datetime | None]  # None: the account may log in
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginFailure(Base):
    """One failed login, by the name tried and the client's address; the throttle counts these.

    A successful login clears (but keeps) the failures of its name and address.
    """

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_name", "name", "created_at"),
        Index("ix_login_failures_address", "address", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(64))
    cleared: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# The spot-check sort's order of auto labels: a multiplicative hash of the id, unrelated to confidence.
# Literal SQL, the same text in the index and the query, so both databases match the two.
SPOT_CHECK_ORDER = "(({id} * 2654435761) % 4294967291)"


class Label(Base):
    """The current label of one image in one group (concept or attribute).

    ``version`` guards against lost updates: a review made on a stale view is refused.
    """

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("image_id", "group"),
        # image_id last in the indexes a map colouring reads (migration 0022): a group's million
        # values, statuses or scores come from the index alone instead of a random page per label
        Index("ix_labels_group_value", "group", "value", "image_id"),
        # reviewed labels only (migration 0007): a query seeking by status says status <> 'proposed'
        Index("ix_labels_group_reviewed", "group", "status", sqlite_where=text("status <> 'proposed'"),
              postgresql_where=text("status <> 'proposed'")),
        # One per queue sort, so a page walks an index in its order instead of sorting a whole group
        # (migration 0013; review.decisions' segments name them).
        Index("ix_labels_queue_id", "group", "status", "id", "image_id"),
        Index("ix_labels_queue_margin", "group", "status", "margin", "id"),
        Index("ix_labels_queue_confidence", "group", "status", "confidence", "id", "image_id"),
        Index("ix_labels_queue_informative", "group", "status", "informative_rank", "id"),
        Index("ix_labels_queue_suspect", "group", "status", "suspect_score", "id", "image_id",
              sqlite_where=text("suspect_score IS NOT NULL"), postgresql_where=text("suspect_score IS NOT NULL")),
        Index("ix_labels_queue_spot_check", "group", text(SPOT_CHECK_ORDER.format(id="id")), "id",
              sqlite_where=text("status = 'auto'"), postgresql_where=text("status = 'auto'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    group: Mapped[str] = mapped_column(String(128))
    value: Mapped[str | None] = mapped_column(String(256))  # None: "none of these"
    predicted: Mapped[str | None] = mapped_column(String(256))  # the model's proposal
    confidence: Mapped[float | None] = mapped_column(Float)
    margin: Mapped[float | None] = mapped_column(Float)
    strategy: Mapped[str | None] = mapped_column(String(32))
    # Per option (cosine, confidence) as uint16 pairs in the prompt set's option order (stored_scores)
    option_scores: Mapped[bytes | None] = mapped_column(LargeBinary)
    prompt_set_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_sets.id", ondelete="SET NULL"))
    fit_id: Mapped[int | None] = mapped_column(ForeignKey("fits.id", ondelete="SET NULL"))  # None: zero-shot
    priority: Mapped[int | None] = mapped_column(Integer)  # cold-start review order; None: by margin
    # Place in the group's "most informative" order (labeling.queue_order), written by each label run
    informative_rank: Mapped[int | None] = mapped_column(Integer)
    # proposed | auto | accepted | corrected | rejected (auto: accepted by ``manage.py accept``, not a person)
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    # the accept run that made it ``auto`` (kept after a person decides it: their decision is a spot-check)
    accept_run_id: Mapped[int | None] = mapped_column(Integer)
    # manage.py audit: how surely a reviewed label is wrong (confident learning); None: not audited
    suspect_score: Mapped[float | None] = mapped_column(Float)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # an imported review's reviewer who is no labeler user (Label Studio's completed_by), as text;
    # None whenever ``reviewed_by`` names the reviewer (migration 0017)
    reviewer_name: Mapped[str | None] = mapped_column(String(256))
    reviewed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(Seconds, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    image: Mapped[Image] = relationship()
    prompt_set: Mapped[PromptSetRecord | None] = relationship()

    @property
    def reviewed(self) -> bool:
        return self.status != "proposed"


# A label's statuses other than "proposed" (review.decisions.STATUSES holds them all).
NOT_PROPOSED = ("auto", "accepted", "corrected", "rejected")
# A value a person decided, kept or corrected: what learn learns from and exports call ground truth.
DECIDED = ("accepted", "corrected")
# The condition of ix_labels_group_reviewed, word for word: SQLite uses a partial index only for a
# query that repeats it, so a query seeking reviewed labels adds this (alone or beside a status test).
# The IN beside it lets SQLite seek (group, status) in the queue's indexes of migration 0013 as well:
# without statistics it may pick one of those, and with `!=` alone it would walk the whole group.
REVIEWED_ONLY = and_(Label.status != "proposed", Label.status.in_(NOT_PROPOSED))


class Fit(Base):
    """A classifier one group learned from its reviews (``manage.py learn``).

    The newest fit of a group, model and prompt-set version is the one ``label`` proposes with;
    older fits stay, so every label can say which fit produced it.
    """

    __tablename__ = "fits"
    __table_args__ = (Index("ix_fits_lookup", "model_id", "group", "prompt_set_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group: Mapped[str] = mapped_column(String(128))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    prompt_set_id: Mapped[int] = mapped_column(ForeignKey("prompt_sets.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(32))  # zero-shot | cache | head
    reviewed: Mapped[int] = mapped_column(Integer)
    report: Mapped[dict] = mapped_column(JSON)  # the ``learn --json`` entry
    classifier: Mapped[bytes] = mapped_column(LargeBinary)  # fewshot.Classifier.to_bytes()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """Long work started from the web (learn and relabel), run off the request with its progress."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | running | done | failed
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict | None] = mapped_column(JSON)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ReviewEvent(Base):
    """Append-only history of every review decision."""

    __tablename__ = "review_events"
    __table_args__ = (Index("ix_review_events_user_id", "user_id", "id"),  # a reviewer's undo
                      Index("ix_review_events_run_id", "run_id", sqlite_where=text("run_id IS NOT NULL"),
                            postgresql_where=text("run_id IS NOT NULL")),  # a run's spot-checks
                      Index("ix_review_events_bulk_id", "bulk_id", sqlite_where=text("bulk_id IS NOT NULL"),
                            postgresql_where=text("bulk_id IS NOT NULL")))  # a bulk accept's undo

    id: Mapped[int] = mapped_column(primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(16))  # accept | correct | reject | undo | import
    before_value: Mapped[str | None] = mapped_column(String(256))
    after_value: Mapped[str | None] = mapped_column(String(256))
    before_status: Mapped[str] = mapped_column(String(16))
    after_status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    run_id: Mapped[int | None] = mapped_column(Integer)  # the accept run of an auto label (migration 0009)
    source: Mapped[str | None] = mapped_column(String(256))  # an import's file name (migration 0014)
    reviewer_name: Mapped[str | None] = mapped_column(String(256))  # an import's reviewer who is no user (0017)
    bulk_id: Mapped[int | None] = mapped_column(Integer)  # the bulk accept it was part of (migration 0018)

    user: Mapped[User | None] = relationship()


class BulkAction(Base):
    """One bulk accept by a reviewer (the selection, or every proposal above a threshold), undone as
    one (migration 0018); its labels' events carry its id in ``bulk_id``."""

    __tablename__ = "bulk_actions"
    __table_args__ = (Index("ix_bulk_actions_user_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))  # above | selected
    group: Mapped[str | None] = mapped_column(String(128))
    value: Mapped[str | None] = mapped_column(String(256))
    threshold: Mapped[float | None] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[datetime | None]
    undone: Mapped[int | None] = mapped_column(Integer)  # labels its undo restored
    kept: Mapped[int | None] = mapped_column(Integer)  # labels its undo left: changed by someone since


class UserPreferences(Base):
    """A user's review settings (migration 0018), as ``review.preferences`` validated them."""

    __tablename__ = "user_preferences"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    settings: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AcceptRun(Base):
    """One ``manage.py accept``: the proposals of a group it made ``auto``, at what stated precision."""

    __tablename__ = "accept_runs"
    __table_args__ = (Index("ix_accept_runs_group", "group", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group: Mapped[str] = mapped_column(String(128))
    fit_id: Mapped[int | None] = mapped_column(ForeignKey("fits.id", ondelete="SET NULL"))
    min_precision: Mapped[float] = mapped_column(Float)  # what was asked
    threshold: Mapped[float] = mapped_column(Float)
    estimated_precision: Mapped[float] = mapped_column(Float)
    lower_bound: Mapped[float] = mapped_column(Float)  # the stated precision: a 95% lower bound
    accepted: Mapped[int] = mapped_column(Integer)
    coverage: Mapped[float] = mapped_column(Float)
    report: Mapped[dict] = mapped_column(JSON)  # the evidence: reviews, errors, the curve
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[datetime | None]


class ReviewSkip(Base):
    """A reviewer's skip: the label goes to the end of that reviewer's queue (newest skip last).

    One row per label and reviewer; skipping again replaces the row, so its id orders the skips.
    A decision by that reviewer clears it.
    """

    __tablename__ = "review_skips"
    __table_args__ = (UniqueConstraint("label_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewLease(Base):
    """A reviewer's claim on a label their queue shows (or shows next), until ``expires_at``.

    One row per label: claiming a label someone else holds unexpired does nothing (migration 0010).
    Other reviewers' queues skip it; it lapses by itself when the tab is gone.
    """

    __tablename__ = "review_leases"
    __table_args__ = (Index("ix_review_leases_user_id", "user_id", "expires_at"),)

    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # when a queue page last claimed it (renewals leave it): a closed tab releases only its own page's
    # claims, not those a newer page of the same reviewer made just before (migration 0013)
    claimed_at: Mapped[datetime | None]


class ReviewAssignment(Base):
    """An admin gave a group (``value`` None) or a group's value to a reviewer: labels it matches
    appear only in the queues of the reviewers it was given to."""

    __tablename__ = "review_assignments"
    __table_args__ = (UniqueConstraint("group", "value", "user_id"),
                      Index("ix_review_assignments_group", "group", "value"))

    id: Mapped[int] = mapped_column(primary_key=True)
    group: Mapped[str] = mapped_column(String(128))
    value: Mapped[str | None] = mapped_column(String(256))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Flag(Base):
    """A flag on an image (``label_id`` None) or on one of its labels, with an optional note:
    "ambiguous", "bad image" or a name the team chose (migration 0010)."""

    __tablename__ = "flags"
    __table_args__ = (Index("ix_flags_image_id", "image_id", "name"), Index("ix_flags_label_id", "label_id"),
                      Index("ix_flags_name", "name"))

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class QaTask(Base):
    """A second look at one decision, drawn at random (each group's QA share): another reviewer
    answers blind; ``agreed`` or ``disagreed``, and an admin ``resolved`` a disagreement."""

    __tablename__ = "qa_tasks"
    __table_args__ = (Index("ix_qa_tasks_status", "status", "group"), Index("ix_qa_tasks_label_id", "label_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    group: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("review_events.id", ondelete="SET NULL"))
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    value: Mapped[str | None] = mapped_column(String(256))  # what the reviewer decided (None: none of these)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | agreed | disagreed | resolved
    qa_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    qa_value: Mapped[str | None] = mapped_column(String(256))
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    resolved_value: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]


class IndexChange(Base):
    """Append-only log of changes to the set of indexable vectors, written by database triggers
    (migration 0006) so no code path can forget it: an index file stamped with the last change
    it holds replays only newer rows when opened. ``model_id`` NULL: an image came or went."""

    __tablename__ = "index_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(BigInteger)
    model_id: Mapped[int | None] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(8))  # add | remove | update (the vector was replaced)


class DuplicateCalibration(Base):
    """The thresholds ``duplicates`` found for a model, and how (migration 0016); the newest counts."""

    __tablename__ = "duplicate_calibrations"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    near: Mapped[float] = mapped_column(Float)  # cosine at or above which two vectors may be one picture
    scene: Mapped[float] = mapped_column(Float)  # cosine at or above which two images share a scene
    pixels: Mapped[float | None] = mapped_column(Float)  # thumbnail agreement a near pair must reach
    colour: Mapped[float | None] = mapped_column(Float)  # thumbnail colour distance a near pair stays within
    look: Mapped[float | None] = mapped_column(Float)  # the most a near pair's two aligned checks may add up to
    # the aligned check's limits (migration 0021); NULL in an older calibration, measured again
    residual: Mapped[float | None] = mapped_column(Float)
    aligned_colour: Mapped[float | None] = mapped_column(Float)
    report: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DuplicateGroup(Base):
    """A group of images one ``duplicates`` run found at one level; a later run of the same model
    and level replaces them. ``keep_image_id`` is the suggested one to keep."""

    __tablename__ = "duplicate_groups"
    __table_args__ = (Index("ix_duplicate_groups_model_level", "model_id", "level"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(16))  # exact | near | scene
    seed_image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    keep_image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    threshold: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DuplicateMember(Base):
    """An image of a duplicate group, with its cosine similarity to the group's seed (1 for the seed)."""

    __tablename__ = "duplicate_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("duplicate_groups.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True)
    similarity: Mapped[float] = mapped_column(Float)


class DuplicateMark(Base):
    """An image a reviewer marked as a duplicate of ``duplicate_of`` (migration 0016): out of the
    review queues, ``label`` and ``export --exclude-duplicates`` while ``undone_at`` is None."""

    __tablename__ = "duplicate_marks"
    __table_args__ = (Index("ix_duplicate_marks_image_id", "image_id", "undone_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    duplicate_of: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[datetime | None]


class DuplicateMarkEvent(Base):
    """One mark or unmark, append-only: who marked which image as a copy of which, and when."""

    __tablename__ = "duplicate_mark_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    mark_id: Mapped[int] = mapped_column(ForeignKey("duplicate_marks.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    duplicate_of: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # mark | unmark
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MapLayout(Base):
    """A model's map (migration 0019): how it was fitted, and ``version``, raised on every change
    of its positions (a web process's cached copy compares it)."""

    __tablename__ = "map_layouts"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    method: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    anchors: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    report: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MapPosition(Base):
    """An image's place on its model's map; ``anchor``: one of the sample the layout was fitted on."""

    __tablename__ = "map_positions"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    anchor: Mapped[bool] = mapped_column(Boolean)


class MapSelection(Base):
    """Images selected on the map (a box or a lasso), kept so a review queue holds exactly them."""

    __tablename__ = "map_selections"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MapSelectionMember(Base):
    __tablename__ = "map_selection_members"

    selection_id: Mapped[int] = mapped_column(ForeignKey("map_selections.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
