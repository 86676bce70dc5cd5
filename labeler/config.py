"""One source of configuration: defaults, then the environment, then explicit overrides (CLI flags)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ConfigError


ENGINES = ("local", "ray")


@dataclass(frozen=True)
class Config:
    """Where labeler keeps its state and how it runs.

    Everything lives under ``home`` (``LABELER_HOME``, default ``./instance``): the SQLite
    catalog, the FAISS indexes and the thumbnails.
    """

    home: Path = field(default_factory=lambda: Path("instance"))
    database_url: str | None = None  # None: SQLite file inside home
    model: str | None = None  # None: the collection's model, else DEFAULT_MODEL
    device: str | None = None  # None: cuda when available, else cpu
    encoder_mode: str | None = None  # fp32, int8 or torch (labeler.encoding.encoder.MODES); None: the collection's, else fp32
    encoder_cache: Path | None = None  # ONNX exports; None: LABELER_ENCODER_CACHE or ~/.cache/labeler/encoders
    batch_size: int = 64
    workers: int | None = None  # decode threads; None: all cores
    checkpoint_every: int = 256  # fewest images between index saves (also waits for a quarter of the index)
    thumbnail_size: int = 256
    max_pixels: int = 128_000_000  # larger images are refused as decompression bombs
    secret_key: str | None = None  # Flask sessions; None: generated once into home
    # auto (Flat, then IVF from index_ivf_above vectors), flat, ivf, hnsw or a FAISS factory string
    index_factory: str = "auto"
    index_ivf_above: int = 50_000  # auto: the collection size where approximate IVF search takes over
    index_gpu: bool = False  # search on a GPU (needs faiss-gpu)
    secure_cookies: bool = False  # the web session cookie only over HTTPS (serve behind TLS)
    engine: str = "local"  # "local": threads in this process; "ray": Ray Data stages (labeler.ingest.ray_engine)
    engine_address: str | None = None  # the Ray cluster to join; None: RAY_ADDRESS, else a local one

    def __post_init__(self):
        # Resolved once, here: Flask's send_file and the ONNX cache would otherwise resolve a relative
        # home against their own folders, not the working directory it was given in.
        object.__setattr__(self, "home", _absolute(self.home))
        if self.encoder_cache is not None:
            object.__setattr__(self, "encoder_cache", _absolute(self.encoder_cache))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Config":
        """The environment's settings (``LABELER_*``, see :data:`ENV_SETTINGS`), then ``overrides``
        (the CLI's flags; None leaves a setting alone)."""
        values = env_settings(dict(os.environ if env is None else env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "home" in values:
            values["home"] = Path(values["home"])
        return cls(**values)

    def with_(self, **changes) -> "Config":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @functools.cached_property  # resolve() costs syscalls, and every session asks for the URL
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'catalog.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.home / "indexes"

    @property
    def thumbnail_dir(self) -> Path:
        return self.home / "thumbnails"


def _absolute(path: Path | str) -> Path:
    """``path`` made absolute against the working directory, ``~`` expanded, symlinks left as they are."""
    return Path(os.path.abspath(os.path.expanduser(path)))


# environment variable → (Config field, how its text is read); empty variables are ignored
ENV_SETTINGS: dict[str, tuple[str, str]] = {
    "LABELER_HOME": ("home", "path"),
    "LABELER_DATABASE_URL": ("database_url", "text"),
    "LABELER_MODEL": ("model", "text"),
    "LABELER_DEVICE": ("device", "text"),
    "LABELER_ENCODER_MODE": ("encoder_mode", "choice"),
    "LABELER_ENCODER_CACHE": ("encoder_cache", "path"),
    "LABELER_SECRET_KEY": ("secret_key", "text"),
    "LABELER_INDEX_FACTORY": ("index_factory", "text"),  # the older name of LABELER_INDEX, which wins
    "LABELER_INDEX": ("index_factory", "text"),
    "LABELER_INDEX_GPU": ("index_gpu", "flag"),
    "LABELER_SECURE_COOKIES": ("secure_cookies", "flag"),
    "LABELER_ENGINE": ("engine", "choice"),
    "LABELER_BATCH_SIZE": ("batch_size", "int"),
    "LABELER_CHECKPOINT_EVERY": ("checkpoint_every", "int"),
    "LABELER_WORKERS": ("workers", "int"),
    "LABELER_INDEX_IVF_ABOVE": ("index_ivf_above", "int"),
}
_OFF = ("0", "false", "no", "off")


def env_settings(env: dict[str, str]) -> dict:
    """The Config fields that ``env`` sets, read as :data:`ENV_SETTINGS` says."""
    values: dict = {}
    for name, (key, kind) in ENV_SETTINGS.items():
        text = env.get(name)
        if not text:
            continue
        if kind == "path":
            values[key] = Path(text)
        elif kind == "choice":
            values[key] = text.strip().lower()
        elif kind == "flag":
            values[key] = text.strip().lower() not in _OFF
        elif kind == "int":
            values[key] = _int_setting(env, name)
        else:
            values[key] = text
    if values.get("engine", ENGINES[0]) not in ENGINES:
        raise ConfigError(f"LABELER_ENGINE must be one of {', '.join(ENGINES)}, not {env['LABELER_ENGINE']!r}")
    return values


def _int_setting(env: dict[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {env[name]!r}") from None
