"""The Ray engine: the pipeline's load and embed stages as Ray Data stages, on one machine or a cluster.

Only the distributor changes (clip-retrieval's habit): the plan stage, the register step
(:class:`~labeler.ingest.walk.CatalogWriter`) and the write stage (:class:`~labeler.ingest.pipeline.VectorWriter`)
run in the driver exactly as in the local runner, so incremental runs, dedup by content hash and
failures recorded per file are the same. What Ray runs::

    ray.data.from_items(planned files)
      → map_batches(DecodeStage)                 CPU tasks: read, hash, decode, thumbnail, uint8 crop
      → map_batches(EmbedStage, concurrency=n)   an actor pool, one model replica per actor
                                                 (one per GPU with ``--device cuda``): normalise, embed
      → iter_batches in the driver               register, dedup, write vectors and the index

The embed stage embeds every decoded file, so a duplicate or an already-embedded image costs a
forward pass that the local runner skips; the driver writes only what the local runner would.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..collection import Collection
from ..config import Config
from ..encoding.encoder import load_encoder
from ..errors import LabelerError
from .walk import LEAVES, Containment, LoadedFile, load_file
from .pipeline import Item, Loaded, ProgressFn, Register, Runner
from ..encoding.preprocessing import NumpyPreprocess

INSTALL_HINT = "pip install 'labeler[ray]'"
# Columns of a decoded batch; pixels (uint8 crops or float32 inputs) and vector are zero where a file failed.
TEXT_COLUMNS = ("path", "sha256", "format", "error")


class EngineError(LabelerError):
    """The Ray engine cannot start: ray is not installed, or the cluster cannot be reached."""


def import_ray():
    """The ``ray`` module, with its Data library; a missing install is a :class:`EngineError`."""
    try:
        import ray  # lazy: Ray only for --engine ray
        import ray.data  # noqa: F401  (ray without its [data] extra lacks pandas and pyarrow)
    except ImportError as exc:
        raise EngineError(f"the ray engine needs Ray Data ({exc}); install it with: {INSTALL_HINT}") from None
    return ray


def connect(address: str | None) -> None:
    """Join the cluster at ``address`` (``RAY_ADDRESS`` when None), or start one on this machine.

    A cluster this process starts runs its workers with this process's ``labeler`` on their
    path, so a checkout that is not installed works too; on a real cluster every node has
    labeler installed (see the README).
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None and "ray" not in sys.modules:
        # A cluster private to this process listens on loopback only; Ray would pick the
        # machine's network address unless it believes it cannot cluster (read at import).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    for name in ("ray", "ray.data"):  # library code never prints: the command reports
        logging.getLogger(name).setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    if address is None:
        source = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="error",
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
        return
    try:
        ray.init(address=address, log_to_driver=False, logging_level="error")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EngineError(f"cannot join the Ray cluster at {address}: {exc}") from None


class DecodeStage:
    """Ray Data batch function: ``{"image_id", "path"}`` → everything :func:`load_file` learned.

    Picklable: it holds the config, the model's preprocess transform and the collection's roots,
    never a session or a model.
    """

    def __init__(self, config: Config, preprocess: Callable | None, draft_size: int, roots: list[str] | None):
        self.config = config
        # The numpy port's first half only: uint8 model inputs cross the object store (a quarter
        # of float32's bytes) and the embed actor normalises them. Any other transform: float32.
        self.uint8 = isinstance(preprocess, NumpyPreprocess)
        self.preprocess = preprocess.crop if self.uint8 else preprocess
        self.draft_size = draft_size
        self.roots = roots

    def load(self, path: Path, containment: Containment | None) -> LoadedFile:
        # Same check as Runner._load: a symlink re-pointed since the walk is never read.
        if containment is not None and not containment.contains(path):
            return LoadedFile(path, 0, 0.0, error=LEAVES)
        return load_file(path, self.config, preprocess=self.preprocess, draft_size=self.draft_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        containment = Containment(self.roots) if self.roots else None
        files = [self.load(Path(p), containment) for p in batch["path"]]
        out = {
            "image_id": batch["image_id"],
            "size": np.array([f.size for f in files], dtype=np.int64),
            "mtime": np.array([f.mtime for f in files], dtype=np.float64),
            "width": np.array([f.width for f in files], dtype=np.int64),
            "height": np.array([f.height for f in files], dtype=np.int64),
            "thumbnail": np.array([f.thumbnail for f in files], dtype=object),
        }
        for column in TEXT_COLUMNS:
            out[column] = np.array([str(getattr(f, column) or "") for f in files], dtype=object)
        out["path"] = np.array([str(f.path) for f in files], dtype=object)
        if self.preprocess is not None:
            shape = next((tuple(f.pixels.shape) for f in files if f.pixels is not None), None)
            if shape is not None:  # a batch where every file failed has no pixels column
                dtype = np.uint8 if self.uint8 else np.float32
                out["pixels"] = np.stack([np.zeros(shape, dtype) if f.pixels is None
                                          else np.asarray(f.pixels, dtype=dtype) for f in files])
        return out


class EmbedStage:
    """Ray Data actor: one model replica; ``pixels`` ``[N, 3, H, W]`` (uint8 crops, or float32
    model inputs) → ``vector`` ``[N, D]``."""

    def __init__(self, spec: str, device: str | None, mode: str, cache_dir: str | None, runtime: str | None = None):
        # cache_dir None: the node's own default export cache (each node exports once); runtime None:
        # the fp32 runtime chosen on the node's CPU kind, else the one the driver's config forces
        self.encoder = load_encoder(spec, device, mode, Path(cache_dir) if cache_dir else None, runtime=runtime)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pixels = batch.pop("pixels", None)
        ok = np.array([not e for e in batch["error"]], dtype=bool)
        vectors = np.zeros((len(ok), self.encoder.dim), dtype=np.float32)
        if pixels is not None and ok.any():
            pixels = pixels[ok]
            if pixels.dtype == np.uint8:  # cropped by DecodeStage; the rest of the same transform here
                pixels = self.encoder.preprocess.normalise(pixels)
            vectors[ok] = self.encoder.encode_images(np.ascontiguousarray(pixels))
        batch["vector"] = vectors
        return batch


def embed_stage_args(config: Config, spec: str, mode: str, device: str | None) -> tuple:
    """:class:`EmbedStage`'s constructor arguments for a run of ``config``: what the driver's config
    says of the encoder (its export cache, a forced fp32 runtime) reaches every replica."""
    return (spec, device, mode, str(config.encoder_cache) if config.encoder_cache else None, config.encoder_runtime)


def loaded_rows(batch: dict[str, np.ndarray]) -> list[Loaded]:
    """A batch back from Ray → ``(image id, LoadedFile)`` pairs; ``pixels`` holds the vector ``[D]``."""
    vectors = batch.get("vector")
    rows: list[Loaded] = []
    for i, image_id in enumerate(batch["image_id"]):
        loaded = LoadedFile(Path(batch["path"][i]), int(batch["size"][i]), float(batch["mtime"][i]),
                            sha256=batch["sha256"][i] or None, width=int(batch["width"][i]),
                            height=int(batch["height"][i]), format=batch["format"][i],
                            error=batch["error"][i] or None, thumbnail=batch["thumbnail"][i],
                            pixels=None if vectors is None or batch["error"][i] else vectors[i])
        rows.append((None if image_id < 0 else int(image_id), loaded))
    return rows


def embed_replicas(device: str | None) -> tuple[int, float]:
    """How many embed actors, and GPUs per actor: one per GPU of the cluster (``--device cuda``,
    or no device named and GPUs there), else one per node, its torch using all the node's cores."""
    import ray  # lazy: Ray only for --engine ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    if device is not None and device.startswith("cuda") and gpus < 1:
        raise EngineError(f"--device {device}, but the Ray cluster has no GPUs")
    if gpus and (device is None or device.startswith("cuda")):
        return gpus, 1.0
    return max(1, sum(1 for node in ray.nodes() if node.get("Alive"))), 0.0


class RayRunner(Runner):
    """The :class:`~labeler.ingest.pipeline.Runner` with its load and embed stages on Ray.

    Batches come back in the planned order (Ray Data's ``preserve_order``), so a run gives the
    same image ids as the local runner.
    """

    embeds_here = False  # the actors run the model: the driver never loads its image tower

    def __init__(self, collection: Collection, embed: bool = True):
        connect(collection.config.engine_address)  # first: a missing ray fails before the model loads
        self.device = collection.config.device  # the replicas' device
        self.replicas, self.gpus = embed_replicas(self.device) if embed else (0, 0.0)
        # The driver's own copy of the model, on its CPU, gives the catalog's model row and the
        # preprocess transform (in the ONNX modes only the export's metadata: no tower is loaded);
        # the driver may run on a node without a GPU. The index stays the caller's: a second
        # cache would hold (and save) a second copy of it.
        driver = Collection(collection.config.with_(device="cpu"))
        driver.index_keeper = collection.index_keeper
        super().__init__(driver, embed)

    def batches(self, items: Sequence[Item]) -> Iterator[list[Loaded]]:
        """The Ray Data pipeline over ``items``; yields the driver's chunks of ``batch_size``."""
        ray = import_ray()
        config = self.collection.config
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the command draws its own bar
        rows = [{"image_id": -1 if image_id is None else image_id, "path": str(path)} for image_id, path in items]
        blocks = max(1, -(-len(rows) // self.batch))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        roots = self.containment.roots if self.containment is not None else None
        ds = ds.map_batches(DecodeStage(config, self.encoder.preprocess if self.encoder else None,
                                        self._draft, roots), batch_size=self.batch, batch_format="numpy")
        if self.encoder is not None:
            # A CPU replica claims no core: its torch threads share the node's cores with the decode
            # tasks, as the local runner's model shares them with its decode threads. The differing
            # resources also keep Ray from fusing decoding into the (few) embed actors.
            with self.collection.session() as s:
                spec, mode = self.collection.models.spec(s), self.collection.models.mode(s)
            ds = ds.map_batches(EmbedStage, fn_constructor_args=embed_stage_args(config, spec, mode, self.device),
                                batch_size=self.batch, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=self.replicas),
                                num_cpus=1 if self.gpus else 0, num_gpus=self.gpus)
        # No prefetch: Ray Data's prefetcher holds a block back until the next ones are ready, so with
        # prefetch_batches=2 the first vectors reached the driver only when the third block was
        # embedded and the catalog writes no longer overlapped the model (measured: -20% img/s).
        for batch in ds.iter_batches(batch_size=self.batch, batch_format="numpy", prefetch_batches=0):
            yield loaded_rows(batch)

    def run(self, items: Sequence[Item], register: Register, progress: ProgressFn | None = None) -> None:
        """Like :meth:`Runner.run`; what is queued is each image's vector, not its model input."""
        if not items:
            return
        for chunk in self.batches(items):
            to_embed, done = register(chunk)
            for image_id, vector in to_embed:
                self._queued.setdefault(image_id, vector)
            if len(self._queued) >= self.batch:
                self.flush()
            if progress:
                progress(done)

    def flush(self) -> None:
        """Write the queued vectors, at most ``batch_size`` per write."""
        ids, vectors = list(self._queued), list(self._queued.values())
        self._queued.clear()
        if self.writer is None:
            return
        for start in range(0, len(ids), self.batch):
            self.writer.write(ids[start:start + self.batch], np.stack(vectors[start:start + self.batch]))
