"""The Python API: one object per collection, whose methods are the CLI's commands.

```python
import labeler

col = labeler.open("instance")           # the home folder: catalog, indexes, thumbnails
col.index(["~/photos"])                  # {"added": 12, "embedded": 12, ...}
col.label("workshop")                    # {"labeled": 72, "groups": {...}, ...}
col.search("metal hammer with wooden handle", k=10)   # [{"image_id", "path", "score"}, ...]
col.learn()                              # {group: {"method", "reviewed", ...}}
col.export("coco", "out.json")           # {"format", "path", "images", "labels"}
```

Every method returns exactly what the matching command prints with ``--json`` (plain dicts and
lists, JSON-ready) and prints nothing. A mistake a user can make raises a
:class:`labeler.errors.LabelerError` subclass with the message the CLI would print; the CLI is a
thin caller of these methods. Long work takes ``progress(k)`` (called after every ``k`` items)
and, where the total is known only later, ``total(n)``.

Settings come from :class:`labeler.config.Config`: :func:`open` reads the environment as the CLI
does (``LABELER_HOME``, ``LABELER_MODEL``, ...), then its keyword arguments win.
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

from . import search as search_module
from .collection import Collection
from .config import Config
from .core.prompts import PromptSet, load_prompt_set
from .errors import ConfigError, LabelerError, user_file
from .exchange.export import ExportOptions, export_labels
from .files import apply_umask
from .exchange.importing import import_labels as import_label_file
from .ingest.run import embed_pending, index_paths, model_spec
from .labeling.bulk import DEFAULT_STRATEGY, check_request, label_collection
from .labeling.learning import learn as learn_groups
from .labeling.learning import write_tuned_prompt_set
from .labeling.prompt_search import search_prompt_set
from .review import audit as audit_module
from .review import trust
from .store import db, queue_indexes
from .store.stats import catalog_counts

__all__ = ["Labeler", "open"]

CATALOG_UNREPAIRABLE = ("the catalog itself is damaged, which --repair cannot fix: stop every labeler process, "
                        "copy the home, then restore a backup of catalog.db or salvage it with "
                        "`sqlite3 catalog.db .recover | sqlite3 recovered.db`")

Progress = Callable[[int], None] | None
PromptSetRef = str | Path | PromptSet


def open(home: str | Path | None = None, *, model: str | None = None, device: str | None = None,
         **settings) -> "Labeler":  # noqa: A001 (labeler.open, as the issue and open_clip's habit name it)
    """The collection under ``home`` (default: ``LABELER_HOME``, else ``./instance``).

    ``model``: a model spec (default: the collection's, else ``labeler-tiny``); ``device``: a
    torch device; ``settings``: any other :class:`~labeler.config.Config` field (``batch_size``,
    ``encoder_mode``, ``index_factory``, ...). Nothing is created until a method needs the
    catalog; ``search``, ``similar``, ``stats``, ``check`` and ``reindex`` on a home that does not
    exist raise :class:`~labeler.errors.CatalogError` instead of creating it, as the CLI does.
    """
    unknown = sorted(set(settings) - {f.name for f in fields(Config)})
    if unknown:
        raise ConfigError(f"labeler.open: no setting {unknown[0]!r} (see labeler.config.Config)")
    given = {"home": Path(home).expanduser() if home is not None else None, "model": model, "device": device}
    config = Config.from_env(**{k: v for k, v in given.items() if v is not None})
    return Labeler(config.with_(**settings) if settings else config)


class Labeler:
    """``Labeler(config)``: the API over one collection (see :func:`open`).

    ``on_export(line)`` receives the progress lines of a first ONNX export of the model (the
    CLI prints them on stderr); None keeps them quiet.
    """

    def __init__(self, config: Config, on_export: Callable[[str], None] | None = None):
        self.config = config
        self.on_export = on_export
        self._collection: Collection | None = None

    def __repr__(self) -> str:
        return f"labeler.open({str(self.config.home)!r})"

    # -- the collection ----------------------------------------------------------------------
    def collection(self) -> Collection:
        """The underlying :class:`~labeler.collection.Collection`, created (and migrated) on first use.

        First, the process's umask becomes ``config.umask`` (``LABELER_UMASK``, 077), as the CLI
        and the web app set it: the catalog (password hashes) and thumbnails are the owner's alone.
        """
        if self._collection is None:
            apply_umask(self.config.umask)
            self._collection = Collection(self.config, on_export=self.on_export)
        return self._collection

    def _existing(self) -> Collection:
        """The collection, for a method that only reads: a missing home is an error, never created."""
        if self._collection is None:
            db.require_catalog(self.config)
        return self.collection()

    def prompt_set(self, ref: PromptSetRef) -> PromptSet:
        """A prompt set: a :class:`~labeler.core.prompts.PromptSet`, a YAML path, or a name
        (the prompt lab's saved version in the home if there is one, else the shipped file)."""
        return ref if isinstance(ref, PromptSet) else load_prompt_set(ref, home=self.config.home)

    # -- indexing ----------------------------------------------------------------------------
    def index(self, paths: Iterable[str | Path], progress: Progress = None, total: Progress = None) -> dict:
        """Register every image under ``paths`` and embed what is new (``manage.py index``)."""
        return self._index(paths, True, progress, total)

    def ingest(self, paths: Iterable[str | Path], progress: Progress = None, total: Progress = None) -> dict:
        """Register images (hash, decode, thumbnail) without embedding them (``manage.py ingest``)."""
        return self._index(paths, False, progress, total)

    def _index(self, paths: Iterable[str | Path], embed: bool, progress: Progress, total: Progress) -> dict:
        roots = [Path(p).expanduser() for p in paths]
        missing = [str(p) for p in roots if not p.exists()]
        if missing:
            raise LabelerError(f"no such file or folder: {missing[0]}")
        return index_paths(self.collection(), roots, embed=embed, progress=progress, total=total).to_dict()

    def embed(self, progress: Progress = None, total: Progress = None) -> dict:
        """Embed every registered image without a vector for the model (``manage.py embed``):
        ``{"embedded", "model"}``."""
        collection = self.collection()
        embedded = embed_pending(collection, progress=progress, total=total)
        return {"embedded": embedded, "model": model_spec(collection)}

    def stats(self) -> dict:
        """Counts of images, vectors, failures and missing files (``manage.py stats``):
        ``{"images", "embedded", "failed", "missing", "files", "model", "home", "backend"}``."""
        collection = self._existing()
        with collection.session() as s:
            counts = catalog_counts(s)
            embedded = collection.vectors.count(s)
            model = collection.models.stored_spec(s)
            backend = collection.models.backend(s) if model else None  # loads nothing
        return {"images": counts["images"], "embedded": embedded, "failed": counts["failed"],
                "missing": counts["missing"], "files": counts["files"], "model": model,
                "home": str(collection.config.home), "backend": backend}

    def check(self, repair: bool = False, full: bool = False) -> dict:
        """Verify the catalog's pages (SQLite quick_check, ``full``: integrity_check), that the
        index ids equal the catalog's embedded ids and that a sample of its vectors equals the
        stored ones (``manage.py check``): ``{"ok", "problems", "repaired", "unrepaired", "index",
        "recall"}``; ``repair`` rebuilds a broken index (a damaged catalog is named in ``unrepaired``)."""
        collection = self._existing()
        catalog_problems = db.integrity_problems(self.config, full)
        problems = list(catalog_problems) or self._index_problems()  # a damaged catalog is compared with nothing
        queue_gaps = [] if catalog_problems else self._queue_index_problems()
        repaired, unrepaired = False, []
        if (problems or queue_gaps) and repair:
            if catalog_problems:
                unrepaired = [CATALOG_UNREPAIRABLE]
            else:
                with collection.session() as s:
                    if problems:
                        collection.index_keeper.sync(s, rebuild=True)
                    queue_indexes.restore(s)
                repaired = True
                problems = self._index_problems()
                queue_gaps = self._queue_index_problems()
        # Only a sound index is described: opening a broken one would rebuild it, which is repair's call.
        info = {"index": None, "recall": None} if problems else self._index_info()
        problems += queue_gaps
        return {"ok": not problems, "problems": problems, "repaired": repaired, "unrepaired": unrepaired, **info}

    def _queue_index_problems(self) -> list[str]:
        """The review queue's indexes a label or accept run set aside and did not build again (it stopped)."""
        with self._existing().session() as s:
            gone = queue_indexes.missing(s)
        return [f"the review queue's indexes (or, on PostgreSQL, the labels' foreign keys) {', '.join(gone)} are "
                "missing (a label or accept run stopped half way; queue pages sort whole groups until they are "
                "back): run label, or check --repair"] if gone else []

    def _index_problems(self) -> list[str]:
        collection = self.collection()
        with collection.session() as s:
            return collection.index_keeper.problems(s)

    def reindex(self, index_type: str | None = None, progress: Progress = None, total: Progress = None) -> dict:
        """Rebuild the index from the stored vectors (``manage.py reindex``); ``index_type``:
        auto, flat, ivf, hnsw or a FAISS factory string. ``total(n)`` gets the vector count first."""
        collection = self._existing()
        started = time.monotonic()
        with collection.session() as s:
            if total is not None:
                total(collection.vectors.count_present(s))
            collection.index_keeper.rebuild(s, index_type, progress=progress)
        return {**self._index_info(), "seconds": round(time.monotonic() - started, 3)}

    def _index_info(self) -> dict:
        """``index`` (type, factory, vectors, nlist/nprobe, stamp) and its measured ``recall``@10;
        both None before the collection has a model."""
        collection = self.collection()
        with collection.session() as s:
            if collection.models.current_id(s) is None:
                return {"index": None, "recall": None}
            recall = collection.index_keeper.recall(s)
            return {"index": collection.index_keeper.describe(s),
                    "recall": None if recall is None else round(recall, 4)}

    def images(self) -> int:
        """How many vectors the model in force has (the images ``label`` will score)."""
        collection = self.collection()
        with collection.session() as s:
            return collection.vectors.count(s, collection.models.require_id(s))

    # -- labeling ----------------------------------------------------------------------------
    def label(self, prompt_set: PromptSetRef, strategy: str | None = None, groups: Sequence[str] | None = None,
              progress: Progress = None, stage: Callable[[str, int | None], None] | None = None) -> dict:
        """Propose a label per embedded image and group of ``prompt_set`` (``manage.py label``);
        reviewed labels are kept. ``strategy`` None: each group's fit from reviews where it has one.
        ``stage(name, total)``: each pass starts, ``progress`` counting again (``label_collection``)."""
        chosen = self.prompt_set(prompt_set)
        check_request(chosen, strategy or DEFAULT_STRATEGY, groups)  # before the catalog is opened
        return label_collection(self.collection(), chosen, strategy, list(groups) if groups else None,
                                progress=progress, stage=stage).to_dict()

    def search_prompts(self, out: str | Path, groups: Sequence[str] | None = None,
                       prompt_set: PromptSetRef | None = None, candidates: str | Path | None = None,
                       force: bool = False, progress: Progress = None) -> dict:
        """Search each group's prompts from its reviews and write them to ``out`` (``manage.py learn
        --search-prompts``): ``{"path", "version", "candidates", "groups": {group: report}}``."""
        chosen = self.prompt_set(prompt_set) if prompt_set is not None else None
        collection = self.collection()
        out = Path(out)
        with user_file(out):
            return search_prompt_set(collection, list(groups) if groups else None, chosen, out,
                                     Path(candidates) if candidates is not None else None, force, progress)

    def learn(self, groups: Sequence[str] | None = None, prompt_set: PromptSetRef | None = None,
              write_prompt_set: str | Path | None = None, progress: Progress = None) -> dict:
        """Fit each group from its reviews (``manage.py learn``): ``{group: report}``.

        ``write_prompt_set``: also write a new prompt-set version with prompt weights fitted on
        the reviews there; each group's report then has ``prompt_weights``.
        """
        chosen = self.prompt_set(prompt_set) if prompt_set is not None else None
        collection = self.collection()
        with collection.session() as s:
            collection.models.require_id(s)
        report = learn_groups(collection, list(groups) if groups else None, chosen, progress=progress)
        if write_prompt_set is not None:
            out = Path(write_prompt_set)
            with user_file(out):
                written = write_tuned_prompt_set(collection, list(groups) if groups else None, chosen, out)
            for group, entry in written["groups"].items():
                if group in report:
                    report[group]["prompt_weights"] = entry
        return report

    # -- search ------------------------------------------------------------------------------
    def search(self, query: str, k: int = 20, where: dict[str, str] | Sequence[str] | None = None,
               status: str | None = None, templates: bool = False, exact: bool = False) -> list[dict]:
        """Images for a free-text or combined ``query`` (``manage.py search``), best first:
        ``[{"image_id", "path", "score"}]``. ``where``: ``{"concept": "hammer"}`` or
        ``["concept=hammer"]``; ``status``: proposed, accepted, corrected, rejected or reviewed."""
        if not query:
            raise LabelerError("give a QUERY (or --concept OPTION --prompt-set FILE)")
        search_module.check_query_size(query, self.config)  # LABELER_MAX_QUERY_CHARS, before any parsing
        search_module.parse_query(query)  # a syntax error is reported before the catalog is opened
        hits = search_module.search(self._existing(), query, k, _where(where), status, templates, exact=exact)
        return [h.to_dict() for h in hits]

    def search_concept(self, concept: str, prompt_set: PromptSetRef, k: int = 20,
                       where: dict[str, str] | Sequence[str] | None = None, status: str | None = None,
                       exact: bool = False) -> list[dict]:
        """An option's top ``k`` through its prompt ensemble (``manage.py search --concept``)."""
        chosen = self.prompt_set(prompt_set)
        hits = search_module.search_concept(self._existing(), chosen, concept, k, _where(where), status, exact=exact)
        return [h.to_dict() for h in hits]

    def similar(self, image: int | str, k: int = 20, where: dict[str, str] | Sequence[str] | None = None,
                status: str | None = None) -> list[dict]:
        """Images most like ``image`` (a catalog id or a path), best first (``manage.py similar``)."""
        hits = search_module.similar(self._existing(), image, k, _where(where), status)
        return [h.to_dict() for h in hits]

    # -- curation ----------------------------------------------------------------------------
    def duplicates(self, level: str = "near", threshold: float | None = None, recalibrate: bool = False,
                   progress: Progress = None, total: Progress = None) -> dict:
        """Find and store duplicate groups at ``level`` (exact, near or scene) from the stored
        vectors (``manage.py duplicates``): ``{"level", "groups": [{"id", "images": [{"image_id",
        "path", "similarity"}], "keep"}], "images_in_groups", "calibration", ...}``. The near and
        scene thresholds are calibrated on copies of the collection's images the first time (or
        with ``recalibrate``); ``threshold`` overrides them."""
        from .curation.duplicates import check_level, find_duplicates  # lazy: PIL and FAISS

        check_level(level)
        collection = self._existing()
        with collection.session() as session:
            return find_duplicates(session, collection, level, threshold, recalibrate, progress, total)

    def duplicate_groups(self, level: str = "near", limit: int | None = None, after: int = 0) -> dict:
        """The stored groups of ``level`` as :meth:`duplicates` reports them, each image with its
        standing mark (``duplicate_of``); ``limit`` groups after group id ``after``, ``next`` to page on."""
        from .curation.duplicates import listed_groups

        collection = self._existing()
        with collection.session() as session:
            return listed_groups(session, collection, level, limit, after)

    def map(self, refit: bool = False, seed: int = 0, progress: Progress = None, total: Progress = None) -> dict:
        """Fit the model's 2-D map of every image (the first time, or with ``refit``), or place the
        images added since without moving the others (``manage.py map``): ``{"model", "method",
        "images", "anchors", "fitted", "placed", "version", "seconds"}``."""
        from .curation.maps import update_map  # lazy: FAISS and openTSNE

        collection = self._existing()
        with collection.session() as session:
            return update_map(session, collection, seed=seed, refit=refit, progress=progress, total=total)

    def map_picture(self, out: str | Path, colour: str | None = None) -> dict:
        """The model's map as a PNG at ``out``, coloured by ``colour`` (a group's name, status,
        confidence, suspect or duplicates; default the main group's values), with a legend."""
        from .curation.maps import picture

        collection = self._existing()
        with collection.session() as session:
            return picture(session, collection, out, colour)

    def mark_duplicates(self, group: int, keep: int | None = None, user_id: int | None = None) -> dict:
        """Keep ``keep`` (default: the group's suggestion) and mark the rest of duplicate group
        ``group`` (``manage.py mark-duplicates``): ``{"group", "keep", "marked"}``. Undo with
        :meth:`unmark_duplicates`; nothing is deleted."""
        from .review import duplicate_marks

        with self._existing().session() as session:
            return duplicate_marks.mark_group(session, group, keep, user_id)

    def unmark_duplicates(self, group: int, user_id: int | None = None) -> dict:
        """Undo the marks of duplicate group ``group``'s images: ``{"group", "unmarked"}``."""
        from .review import duplicate_marks

        with self._existing().session() as session:
            return duplicate_marks.unmark_group(session, group, user_id)

    # -- exchange ----------------------------------------------------------------------------
    def export(self, fmt: str, out: str | Path, groups: Sequence[str] | None = None, concept_group: str = "concept",
               prompt_set: PromptSetRef | None = None, root: str | Path | None = None,
               image_url_prefix: str | None = None, force: bool = False, coco_segmentation: bool = False,
               split_predictions: bool = False, formula_guard: bool = True, exclude_duplicates: bool = False,
               label_studio: tuple[str, str] | None = None, project_title: str | None = None,
               progress: Callable[[int], None] | None = None, total: Callable[[int], None] | None = None) -> dict:
        """Write every label to ``out`` as csv, jsonl, coco, labelstudio, hf or fiftyone (``manage.py export``):
        ``{"format", "path", "images", "labels", "duplicates"}`` (and ``config`` for Label Studio,
        ``predictions`` with ``split_predictions``, ``metadata`` for hf); ``exclude_duplicates`` leaves
        out images marked as duplicates. See :class:`~labeler.exchange.export.ExportOptions`.

        ``label_studio``: (URL, token) of a Label Studio server (labelstudio only): the token is
        checked first, then the export is written and sent as a new project (``project_title``, default
        ``labeler OUT-stem``) with its Local Storage and tasks; the report's ``label_studio`` says which
        (see :mod:`labeler.exchange.label_studio_api`). ``total``/``progress`` count its tasks."""
        chosen = self.prompt_set(prompt_set) if prompt_set is not None else None
        out = Path(out)
        options = ExportOptions(coco_segmentation, split_predictions, formula_guard)
        server = None
        if label_studio is not None:
            from .exchange import label_studio_api

            if fmt != "labelstudio":
                raise LabelerError("--label-studio-url applies to --format labelstudio only")
            server = label_studio_api.LabelStudio(*label_studio)
            label_studio_api.check(server)
        with user_file(out):
            report = export_labels(self.collection(), fmt, out, list(groups) if groups else None, concept_group,
                                   prompt_set=chosen, root=Path(root) if root is not None else None,
                                   image_url_prefix=image_url_prefix, force=force, options=options,
                                   exclude_duplicates=exclude_duplicates)
        if server is not None:
            if total is not None:
                total(report["images"])
            try:
                report["label_studio"] = label_studio_api.send_export(server, report, project_title or
                                                                      f"labeler {out.stem}", progress)
            except label_studio_api.LabelStudioError as exc:
                raise label_studio_api.LabelStudioError(f"{exc} (the export itself is written: {out})") from None
        return report

    def import_labels(self, source: str | Path, groups: Sequence[str] | None = None,
                      prompt_set: PromptSetRef | None = None, allow_new_values: bool = False,
                      overwrite_newer: bool = False, user: str | None = None,
                      progress: Callable[[int], None] | None = None, total: Callable[[int], None] | None = None,
                      label_studio: tuple[str, str] | None = None) -> dict:
        """Import reviewed labels from a CSV or a Label Studio JSON export (``manage.py
        import-labels``); a refused file raises :class:`~labeler.exchange.importing.ImportRefused`,
        whose ``report`` says what was unknown. A cell whose label changed since the export is
        skipped as ``newer_review`` unless ``overwrite_newer``. ``user``: the reviewer of the values
        whose file names none (a labeler user, or a name kept as text). ``label_studio``: (URL, token)
        of the Label Studio server the file came from, whose users name the annotators its exports
        give by id. The file is streamed; ``total`` gets its size in bytes and ``progress`` the bytes
        read since its last call."""
        chosen = self.prompt_set(prompt_set) if prompt_set is not None else None
        source = Path(source)
        collection = self.collection()
        names = None
        if label_studio is not None:
            from .exchange import label_studio_api

            names = label_studio_api.annotators(label_studio_api.LabelStudio(*label_studio))
        with user_file(source):
            return import_label_file(collection, source, list(groups) if groups else None, user=user,
                                     annotators=names, prompt_set=chosen, allow_new_values=allow_new_values,
                                     overwrite_newer=overwrite_newer, progress=progress, total=total)

    # -- trusted labels ----------------------------------------------------------------------
    def accept(self, group: str, min_precision: float, dry_run: bool = False,
               progress: Callable[[int, int], None] | None = None) -> dict:
        """Accept ``group``'s proposals at a certified ``min_precision`` (``manage.py accept``):
        ``{"group", "threshold", "estimated_precision", "lower_bound", "accepted", "coverage", "run", ...}``.
        Raises :class:`~labeler.review.trust.AcceptRefused` (its ``report`` says how many more
        random reviews it needs) when the reviews cannot support the claim. ``progress(done, total)``
        follows the labels written."""
        return trust.accept(self.collection(), group, min_precision, dry_run=dry_run, progress=progress)

    def undo_accept(self, run: int, progress: Callable[[int, int], None] | None = None) -> dict:
        """Return accept run ``run``'s auto labels to proposed (``manage.py accept --undo RUN``):
        ``{"run", "group", "returned", "kept"}``. ``progress(done, total)`` follows the labels."""
        return trust.undo(self.collection(), run, progress=progress)

    def accept_runs(self, group: str | None = None, run: int | None = None) -> list[dict]:
        """The accept runs (of ``group``, or only ``run``) with their spot-checks (``manage.py accept --runs``)."""
        return trust.runs(self._existing(), group, run)

    def sample(self, group: str, count: int, out: str | Path, seed: int | None = None) -> dict:
        """Write ``count`` random proposed labels of ``group`` to the CSV ``out`` to review and
        import (``manage.py sample``): ``{"group", "count", "out", "seed"}``."""
        out = Path(out)
        with user_file(out):
            return trust.sample(self._existing(), group, count, out, seed)

    def no_hit_notes(self, where: dict[str, str] | Sequence[str] | None = None) -> list[str]:
        """Why a search under ``where`` can find nothing (nothing embedded, an unknown group, a value
        no label holds); empty when none applies (see :func:`labeler.search.no_hit_notes`)."""
        return search_module.no_hit_notes(self._existing(), _where(where))

    def audit(self, group: str | None = None, limit: int = 200) -> list[dict]:
        """Reviewed or imported labels that are probably wrong, per group (``manage.py audit``):
        ``[{"group", "cutoff", "flagged", "audited", "method", "suspects"}]``; scores are kept for
        the queue's ``suspect`` sort."""
        return audit_module.audit(self._existing(), group, limit)


def _where(where: dict[str, str] | Sequence[str] | None) -> dict[str, str] | None:
    """Filters as a dict: given as one, or as ``GROUP=VALUE`` strings like ``--where``."""
    if where is None or isinstance(where, dict):
        return where or None
    return search_module.parse_where(list(where)) or None
