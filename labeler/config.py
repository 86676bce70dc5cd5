"""One source of configuration: defaults, then the environment, then explicit overrides (CLI flags)."""

from __future__ import annotations

import functools
import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ConfigError


ENGINES = ("local", "ray")
# Limits on what one file or one request may cost; each is LABELER_<NAME>, a whole number >= 1.
LIMITS = ("max_file_mb", "max_pixels", "max_query_chars", "max_query_terms", "max_prompt_chars", "query_cache_texts", "search_per_minute",
          "decisions_per_minute", "connection_limit", "channel_timeout",
          "max_free_values", "search_budget_ms", "searches_per_user", "searches_at_once")


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
    encoder_mode: str | None = None  # fp32, int8, torch or auto (labeler.encoding.encoder.MODE_SETTINGS); None: the collection's, else auto
    encoder_cache: Path | None = None  # ONNX exports; None: LABELER_ENCODER_CACHE or ~/.cache/labeler/encoders
    # the fp32 towers' runtime: auto (measured per CPU kind), onnxruntime or openvino (labeler.encoding.runtimes)
    encoder_runtime: str | None = None
    batch_size: int = 64
    workers: int | None = None  # decode threads; None: all cores
    checkpoint_every: int = 256  # fewest images between index saves (also waits for a quarter of the index)
    thumbnail_size: int = 256
    max_pixels: int = 128_000_000  # larger images are refused as decompression bombs (Pillow's limit too)
    max_file_mb: int = 512  # larger files are refused from their size, before a byte is read
    max_query_chars: int = 1_000  # a search text (all its terms); longer is a 400 / exit 2
    max_query_terms: int = 32  # terms of a combined query ("a" + "b" - image:3)
    max_prompt_chars: int = 400  # one prompt of a prompt set (CLIP reads only its first 77 tokens)
    query_cache_texts: int = 10_000  # search texts kept in the catalog's text cache per model (LRU)
    search_budget_ms: int = 5_000  # one web search's time, checked between its steps; past it, 503
    search_per_minute: int = 120  # searches per user per minute on the server; past it, 429
    # Searches running at once in one server process: per user (past it, 429) and in all (past it,
    # 503; serve also keeps it at most half its request threads), so long searches never hold every
    # request thread and a login or a queue page always finds one free.
    searches_per_user: int = 2
    searches_at_once: int = 4
    # waitress: open connections per server process (half-sent requests hold one each; waitress's
    # own default, 100, let 110 of them shut everyone out), and the seconds a connection may stay
    # silent before it is closed
    connection_limit: int = 1_000
    channel_timeout: int = 30
    max_free_values: int = 50  # typed corrections listed per group on the queue and search pages
    decisions_per_minute: int = 600  # review decisions (and bulk accepts) per user per minute; past it, 429
    secret_key: str | None = None  # Flask sessions; None: generated once into home
    # auto (Flat, then IVF from index_ivf_above vectors), flat, ivf, hnsw or a FAISS factory string
    index_factory: str = "auto"
    index_ivf_above: int = 50_000  # auto: the collection size where approximate IVF search takes over
    index_gpu: bool = False  # search on a GPU (needs faiss-gpu)
    secure_cookies: bool = False  # the web session cookie only over HTTPS (serve behind TLS)
    engine: str = "local"  # "local": threads in this process; "ray": Ray Data stages (labeler.ingest.ray_engine)
    engine_address: str | None = None  # the Ray cluster to join; None: RAY_ADDRESS, else a local one
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks); from anyone else
    # the header is ignored, so a client cannot pick the address its failed logins count against.
    trusted_proxies: tuple[str, ...] = ()
    # What new files and folders may not grant (LABELER_UMASK, octal): 077 makes them 0600 and
    # 0700, so the catalog (password hashes) and the thumbnails are the owner's alone.
    umask: int = 0o077

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
    def max_file_bytes(self) -> int:
        return self.max_file_mb << 20

    @property
    def index_dir(self) -> Path:
        return self.home / "indexes"

    @property
    def thumbnail_dir(self) -> Path:
        return self.home / "thumbnails"

    @property
    def rendition_dir(self) -> Path:
        """Browser renditions of TIFF and HEIC originals, made on first view: a cache like thumbnails."""
        return self.home / "renditions"


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
    "LABELER_ENCODER_RUNTIME": ("encoder_runtime", "choice"),
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
    "LABELER_UMASK": ("umask", "octal"),
    "LABELER_TRUSTED_PROXIES": ("trusted_proxies", "networks"),
    **{f"LABELER_{key.upper()}": (key, "limit") for key in LIMITS},
}
_OFF = ("0", "false", "no", "off")


def env_settings(env: dict[str, str]) -> dict:
    """The Config fields that ``env`` sets, read as :data:`ENV_SETTINGS` says."""
    values: dict = {}
    for name, (key, kind) in ENV_SETTINGS.items():
        text = env.get(name)
        if text:
            values[key] = _READERS[kind](env, name)
    if values.get("engine", ENGINES[0]) not in ENGINES:
        raise ConfigError(f"LABELER_ENGINE must be one of {', '.join(ENGINES)}, not {env['LABELER_ENGINE']!r}")
    return values


def _umask(env: dict[str, str], name: str) -> int:
    """An octal mask like 077 or 022."""
    try:
        value = int(env[name], 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        raise ConfigError(f"{name} must be an octal mask like 077 or 022, not {env[name]!r}")
    return value


def _networks(env: dict[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of IP addresses or networks, each checked."""
    items = tuple(item.strip() for item in env[name].split(",") if item.strip())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{name} must list IP addresses or networks (10.0.0.1, 10.0.0.0/8), "
                              f"not {item!r}") from None
    return items


def _int_setting(env: dict[str, str], name: str, minimum: int | None = None) -> int:
    try:
        value = int(env[name])
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {env[name]!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {env[name]!r}")
    return value


# how each kind of ENV_SETTINGS text is read: (env, variable name) -> the Config value
_READERS = {
    "path": lambda env, name: Path(env[name]),
    "text": lambda env, name: env[name],
    "choice": lambda env, name: env[name].strip().lower(),
    "flag": lambda env, name: env[name].strip().lower() not in _OFF,
    "int": _int_setting,
    "limit": lambda env, name: _int_setting(env, name, minimum=1),
    "octal": _umask,
    "networks": _networks,
}
