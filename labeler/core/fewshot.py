"""Few-shot classifiers on stored vectors, learned from reviews. Pure numpy; no model, no database.

A group's reviewed labels are a few-shot training set in the model's embedding space. Five
candidate classifiers, all on stored vectors (no backprop through CLIP, so nothing can collapse
into NaN as the study's fine-tuning did):

* ``zero-shot``: the prompt ensembles' text vectors, as labeling does without reviews;
* ``cache``: the zero-shot logits plus a cache of the reviewed image vectors (Tip-Adapter:
  ``alpha * exp(-beta * (1 - cos)) @ one_hot``), training-free;
* ``head``: a linear probe initialised from the text vectors and kept close to them by an L2
  pull (the zero-shot-initialised probe of CLAP / ZS-LP);
* ``gda``: Gaussian discriminant analysis (Wang et al., "A Hard-to-Beat Baseline for
  Training-free CLIP-based Adaptation", ICLR 2024): one mean per option and one shared,
  shrunk covariance, i.e. a linear classifier added to the zero-shot logits, closed-form;
* ``proker``: proximal kernel ridge regression (Bendou et al., "ProKeR: A Kernel Perspective on
  Few-Shot Adaptation of Large Vision-Language Models", CVPR 2025): the zero-shot logits plus
  the RKHS function that best explains the reviews' residuals, closed-form.

Which one, and its blend weight, is chosen by stratified cross-validation on the reviews
themselves; a learned method must beat zero-shot there, otherwise zero-shot stays. Then one
temperature per group is fitted on the out-of-fold logits, so that confidence means accuracy.

Shapes: ``N`` images, ``D`` dimensions, ``O`` options, ``K`` reviewed images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from . import scoring

METHODS = ("zero-shot", "cache", "head", "gda", "proker")
MIN_REVIEWS_PER_OPTION = 1  # an option nobody reviewed cannot be learned, only kept zero-shot
MIN_REVIEWS = 4  # fewer reviews in a group than this: nothing to cross-validate on
CACHE_ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0)
CACHE_BETAS = (1.0, 3.0, 5.5, 10.0)
HEAD_PULLS = (0.0, 0.03, 0.3)  # L2 pull of the head toward the text vectors, relative to the data term
GDA_ALPHAS = (0.01, 0.1, 1.0, 10.0)  # weight of the GDA logits beside zero-shot's (the paper's grid, trimmed)
PROKER_BETAS = (1.0, 3.0, 5.5, 10.0)  # kernel sharpness exp(-beta (1 - cos)), as the cache's
PROKER_LAMBDAS = (0.01, 0.1, 1.0, 10.0)  # proximal ridge: small keeps zero-shot, large trusts the reviews
FOLDS = 5
SIGN_TEST_SIGMAS = 3.0  # how surely a learned method must beat zero-shot on the reviews (see beats)


# ----------------------------------------------------------------------------- the classifiers

@dataclass(frozen=True)
class Classifier:
    """One fitted classifier of a group: ``logits(X) = scale * (X @ W.T + alpha * cache(X) + kernel(X) @ dual) + b``.

    ``weights`` ``[O, D]`` (the text vectors for zero-shot, cache and proker), ``bias`` ``[O]``,
    ``keys`` ``[K, D]`` (cache and proker), ``values`` ``[K]`` (cache only), ``dual`` ``[K, O]``
    (proker only: ``kernel(X) = exp(-beta * (1 - X @ keys.T))``), divided by ``temperature``.
    """

    method: str
    weights: np.ndarray
    bias: np.ndarray
    scale: float
    temperature: float = 1.0
    alpha: float = 0.0
    beta: float = 0.0
    keys: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dual: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def logits(self, image_vecs: np.ndarray) -> np.ndarray:
        """Uncalibrated logits ``[N, O]`` for unit ``image_vecs`` ``[N, D]``."""
        out = self.scale * (np.asarray(image_vecs, np.float32) @ self.weights.T) + self.bias
        if self.alpha and len(self.keys):
            out = out + self.alpha * self.scale * cache_affinity(image_vecs, self.keys, self.values,
                                                                 len(self.weights), self.beta)
        if len(self.dual):
            out = out + self.scale * (kernel(image_vecs, self.keys, self.beta) @ self.dual)
        return out

    def confidence(self, image_vecs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``[N, O]`` (rows sum to 1)."""
        return softmax(self.logits(image_vecs) / self.temperature)

    def to_bytes(self) -> bytes:
        """The fitted arrays as one ``.npz`` blob (stored in the catalog)."""
        buf = io.BytesIO()
        np.savez(buf, weights=self.weights, bias=self.bias, keys=self.keys, values=self.values, dual=self.dual,
                 params=np.array([self.scale, self.temperature, self.alpha, self.beta], np.float64))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, method: str, blob: bytes) -> "Classifier":
        arrays = np.load(io.BytesIO(blob))
        scale, temperature, alpha, beta = (float(v) for v in arrays["params"])
        return cls(method=method, weights=arrays["weights"], bias=arrays["bias"], scale=scale,
                   temperature=temperature, alpha=alpha, beta=beta, keys=arrays["keys"],
                   values=arrays["values"],
                   dual=arrays["dual"] if "dual" in arrays.files else np.zeros((0, 0), np.float32))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax ``[N, O] → [N, O]`` in float64."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cache_affinity(image_vecs: np.ndarray, keys: np.ndarray, values: np.ndarray, n_options: int,
                   beta: float) -> np.ndarray:
    """Tip-Adapter's cache term ``[N, O]``: ``exp(-beta * (1 - X @ keys.T)) @ one_hot(values)``.

    Normalised by the number of keys per option, so an option reviewed 16 times does not outvote
    one reviewed twice merely by count.
    """
    affinity = np.exp(-beta * (1.0 - np.asarray(image_vecs, np.float32) @ keys.T))  # [N, K]
    one_hot = np.zeros((len(values), n_options), np.float32)
    one_hot[np.arange(len(values)), values] = 1.0
    return affinity @ (one_hot / np.maximum(one_hot.sum(axis=0, keepdims=True), 1.0))


def zero_shot(text_vecs: np.ndarray, scale: float) -> Classifier:
    """The prompt ensembles as they are: ``text_vecs`` ``[O, D]``, the option vectors."""
    text_vecs = np.asarray(text_vecs, np.float32)
    return Classifier("zero-shot", text_vecs, np.zeros(len(text_vecs), np.float32), float(scale))


def fit_cache(image_vecs: np.ndarray, labels: np.ndarray, text_vecs: np.ndarray, scale: float,
              alpha: float, beta: float) -> Classifier:
    """The zero-shot classifier plus a cache of the reviewed vectors ``[K, D]`` with ``labels`` ``[K]``."""
    return Classifier("cache", np.asarray(text_vecs, np.float32), np.zeros(len(text_vecs), np.float32),
                      float(scale), alpha=float(alpha), beta=float(beta),
                      keys=np.asarray(image_vecs, np.float32), values=np.asarray(labels, np.int64))


def fit_head(image_vecs: np.ndarray, labels: np.ndarray, text_vecs: np.ndarray, scale: float,
             pull: float, steps: int = 300, lr: float = 0.1) -> Classifier:
    """A linear head ``[O, D]`` + bias ``[O]`` from the text vectors, kept near them.

    Minimises ``cross-entropy + pull * ||W - text_vecs||²`` by full-batch Adam (deterministic).
    """
    return fit_heads(image_vecs, labels, text_vecs, scale, [pull], steps, lr)[0]


def fit_heads(image_vecs: np.ndarray, labels: np.ndarray, text_vecs: np.ndarray, scale: float,
              pulls: list[float], steps: int = 300, lr: float = 0.1) -> list[Classifier]:
    """:func:`fit_head` for each of ``pulls`` ``[H]`` on the same reviews, all ``H`` in one Adam loop.

    The heads are independent; stacking them ``[H, O, D]`` only shares the Python loop, whose
    per-step overhead dominates at a few hundred reviews. Each head gets exactly the numbers
    fitting it alone would: stacked matmuls run one BLAS product per head, the rest is elementwise.
    """
    # float32 like the stored vectors: half the matmul time of float64, and Adam does not need more.
    X = np.asarray(image_vecs, np.float32)
    W0 = np.asarray(text_vecs, np.float32)
    y = np.asarray(labels, np.int64)
    n_options, dim = W0.shape
    pull = np.asarray(pulls, np.float32)[:, None, None]  # [H, 1, 1]
    # W and b side by side [H, O, D + 1], so one set of elementwise Adam operations updates both.
    params = np.zeros((len(pulls), n_options, dim + 1), np.float32)
    params[:, :, :dim] = W0
    W, b = params[:, :, :dim], params[:, :, dim]  # views: updated in place with params
    one_hot = np.zeros((len(y), n_options), np.float32)
    one_hot[np.arange(len(y)), y] = 1.0
    scale = np.float32(scale)
    scaled_X = scale * X  # hoisted: the same product every step
    grad = np.empty_like(params)
    m, v = np.zeros_like(params), np.zeros_like(params)
    for t in range(1, steps + 1):
        logits = scaled_X @ W.transpose(0, 2, 1) + b[:, None, :]  # [H, K, O]
        logits -= logits.max(axis=2, keepdims=True)
        e = np.exp(logits)
        err = (e / e.sum(axis=2, keepdims=True) - one_hot) / len(y)  # [H, K, O]
        grad[:, :, :dim] = scale * err.transpose(0, 2, 1) @ X + 2 * pull * (W - W0)
        grad[:, :, dim] = err.sum(axis=1)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        params -= np.float32(lr / scale) * (m / np.float32(1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return [Classifier("head", W[h].astype(np.float32), b[h].astype(np.float32), float(scale))
            for h in range(len(pulls))]


def kernel(image_vecs: np.ndarray, keys: np.ndarray, beta: float) -> np.ndarray:
    """The RBF kernel of unit vectors ``[N, K]``: ``exp(-beta * (1 - X @ keys.T))`` (Tip-Adapter's and ProKeR's)."""
    return np.exp(-beta * (1.0 - np.asarray(image_vecs, np.float32) @ np.asarray(keys, np.float32).T))


def gda_parameters(image_vecs: np.ndarray, labels: np.ndarray, n_options: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian discriminant analysis of the reviews: ``W`` ``[O, D]`` and ``b`` ``[O]`` of ``X @ W.T + b``.

    One mean ``mu_o`` per option and one covariance shared by all, with equal priors, so the log
    posterior is linear: ``W_o = P mu_o``, ``b_o = log(1/O) - mu_o P mu_o / 2``, ``P`` the precision.
    ``P`` is the paper's shrunk inverse ``D * (S + tr(S / (K - 1)) I)^-1``, ``S`` the within-option
    scatter ``[D, D]`` of the ``K`` reviews, computed through the ``[K, K]`` Woodbury identity
    because ``K`` reviews are far fewer than ``D`` dimensions. An option nobody reviewed gets
    the mean of the others' rows: its GDA logit is the average, neither pushed up nor down.
    """
    X = np.asarray(image_vecs, np.float64)
    y = np.asarray(labels, np.int64)
    dim = X.shape[1]
    seen = np.unique(y)
    mus = np.zeros((n_options, dim))
    for o in seen:
        mus[o] = X[y == o].mean(axis=0)
    Z = X - mus[y]  # [K, D] centred on their option's mean
    shrink = float((Z * Z).sum()) / max(len(y) - 1, 1)  # tr(S / (K - 1)): the paper's trace shrinkage
    W = np.zeros((n_options, dim))
    b = np.zeros(n_options)
    if shrink > 0:
        # (Z.T Z + c I)^-1 M = (M - Z.T (Z Z.T + c I)^-1 Z M) / c, for M = mus.T [D, O]
        M = mus[seen].T
        inner = np.linalg.solve(Z @ Z.T + shrink * np.eye(len(Z)), Z @ M)
        PM = dim * (M - Z.T @ inner) / shrink  # [D, |seen|]
        W[seen] = PM.T
        b[seen] = np.log(1.0 / n_options) - 0.5 * np.einsum("do,do->o", M, PM)
    if len(seen) < n_options:
        unseen = np.setdiff1d(np.arange(n_options), seen)
        W[unseen], b[unseen] = W[seen].mean(axis=0), b[seen].mean()
    return W.astype(np.float32), b.astype(np.float32)


def fit_gda(image_vecs: np.ndarray, labels: np.ndarray, text_vecs: np.ndarray, scale: float,
            alpha: float) -> Classifier:
    """Zero-shot plus ``alpha`` times the GDA logits: ``scale * X @ T.T + alpha * (X @ W.T + b)``.

    ``image_vecs`` ``[K, D]``, ``labels`` ``[K]``, ``text_vecs`` ``T`` ``[O, D]``; the paper's
    ``100 * X @ T.T + alpha * (X @ W + b)`` with the model's own ``scale``. Still one linear map.
    """
    return fit_gdas(image_vecs, labels, text_vecs, scale, [alpha])[0]


def fit_gdas(image_vecs: np.ndarray, labels: np.ndarray, text_vecs: np.ndarray, scale: float,
             alphas: Sequence[float]) -> list[Classifier]:
    """:func:`fit_gda` for each of ``alphas``, estimating the Gaussians once."""
    T = np.asarray(text_vecs, np.float32)
    W, b = gda_parameters(image_vecs, labels, len(T))
    return [Classifier("gda", (T + (a / scale) * W).astype(np.float32), (a * b).astype(np.float32), float(scale))
            for a in alphas]


def proker_duals(image_vecs: np.ndarray, labels: np.ndarray, text_vecs: np.ndarray,
                 params: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    """ProKeR's dual coefficients ``[K, O]`` for each ``(beta, lam)``: ``(K_SS / lam + I)^-1 (Y - S @ T.T)``.

    The prediction is ``X @ T.T + kernel(X, S) @ dual`` (cosine units; :class:`Classifier`
    multiplies by the logit scale): the zero-shot cosines plus the kernel ridge regression of what
    they get wrong on the reviews ``S`` ``[K, D]`` (one-hot targets ``Y`` ``[K, O]``). A small
    ``lam`` keeps zero-shot, a large one trusts the reviews (the training-free form of the
    authors' code). The Gram matrix ``K_SS`` ``[K, K]`` is computed once per beta.
    """
    X = np.asarray(image_vecs, np.float64)
    y = np.asarray(labels, np.int64)
    target = -(X @ np.asarray(text_vecs, np.float64).T)
    target[np.arange(len(y)), y] += 1.0  # Y - zero-shot cosines
    grams: dict[float, np.ndarray] = {}
    out = []
    for beta, lam in params:
        if beta not in grams:
            grams[beta] = kernel(X, X, beta).astype(np.float64)
        out.append(np.linalg.solve(grams[beta] / lam + np.eye(len(y)), target).astype(np.float32))
    return out


def fit_proker(image_vecs: np.ndarray, labels: np.ndarray, text_vecs: np.ndarray, scale: float,
               beta: float, lam: float) -> Classifier:
    """The zero-shot classifier plus ProKeR's kernel term on the reviews ``[K, D]`` with ``labels`` ``[K]``."""
    return fit_prokers(image_vecs, labels, text_vecs, scale, [(beta, lam)])[0]


def fit_prokers(image_vecs: np.ndarray, labels: np.ndarray, text_vecs: np.ndarray, scale: float,
                params: Sequence[tuple[float, float]]) -> list[Classifier]:
    """:func:`fit_proker` for each ``(beta, lam)`` of ``params``, sharing the Gram matrices."""
    T = np.asarray(text_vecs, np.float32)
    keys = np.asarray(image_vecs, np.float32)
    return [Classifier("proker", T, np.zeros(len(T), np.float32), float(scale), beta=float(beta), keys=keys, dual=dual)
            for (beta, _), dual in zip(params, proker_duals(image_vecs, labels, text_vecs, params))]


# ----------------------------------------------------------------------------- calibration

def nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of ``labels`` ``[N]`` under ``softmax(logits)`` ``[N, O]``."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)`` (golden-section on log T)."""
    if len(labels) == 0:
        return 1.0
    lo, hi = np.log(0.05), np.log(20.0)
    golden = (np.sqrt(5) - 1) / 2
    a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fa, fb = nll(logits / np.exp(a), labels), nll(logits / np.exp(b), labels)
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - golden * (hi - lo)
            fa = nll(logits / np.exp(a), labels)
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = nll(logits / np.exp(b), labels)
    return float(np.exp((lo + hi) / 2))


def ece(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Expected calibration error of the top answer of ``softmax(logits / temperature)``."""
    if len(labels) == 0:
        return 0.0
    p = softmax(np.asarray(logits) / temperature)
    return scoring.expected_calibration_error(p.max(axis=1), p.argmax(axis=1) == labels)


# ----------------------------------------------------------------------------- choosing by CV

def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Fold number ``[K]`` of each review: every option's reviews dealt round-robin over the folds."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), np.int64)
    offset = 0
    for option in np.unique(labels):
        members = np.flatnonzero(labels == option)
        fold[rng.permutation(members)] = (offset + np.arange(len(members))) % folds
        offset += len(members)  # so single reviews of many options spread over all folds
    return fold


def candidates(methods: Sequence[str] | None = None) -> list[tuple[str, dict]]:
    """Every (method, parameters) the cross-validation compares; zero-shot first, always.

    ``methods`` None: all of :data:`METHODS`; else only these (``evaluate --replay --methods``).
    """
    chosen = set(METHODS if methods is None else methods)
    unknown = chosen - set(METHODS)
    if unknown:
        raise ValueError(f"unknown method '{sorted(unknown)[0]}' (known: {', '.join(METHODS)})")
    out: list[tuple[str, dict]] = [("zero-shot", {})]
    if "cache" in chosen:
        out += [("cache", {"alpha": a, "beta": b}) for a in CACHE_ALPHAS for b in CACHE_BETAS]
    if "head" in chosen:
        out += [("head", {"pull": p}) for p in HEAD_PULLS]
    if "gda" in chosen:
        out += [("gda", {"alpha": a}) for a in GDA_ALPHAS]
    if "proker" in chosen:
        out += [("proker", {"beta": b, "lam": lam}) for b in PROKER_BETAS for lam in PROKER_LAMBDAS]
    return out


def build(method: str, params: dict, image_vecs: np.ndarray, labels: np.ndarray, text_vecs: np.ndarray,
          scale: float) -> Classifier:
    return build_all([(method, params)], image_vecs, labels, text_vecs, scale)[0]


def build_all(options: Sequence[tuple[str, dict]], image_vecs: np.ndarray, labels: np.ndarray,
              text_vecs: np.ndarray, scale: float) -> list[Classifier]:
    """Each of ``options`` (method, parameters) fitted on the same reviews ``[K, D]``, ``[K]``.

    What candidates of one method share is computed once: the heads run in one Adam loop, the
    GDA Gaussians are estimated once for every alpha, ProKeR's kernel once per beta.
    """
    out: list[Classifier | None] = [None] * len(options)
    by_method: dict[str, list[int]] = {}
    for c, (method, _) in enumerate(options):
        if method not in METHODS:
            raise ValueError(f"unknown method '{method}' (known: {', '.join(METHODS)})")
        by_method.setdefault(method, []).append(c)
    for c in by_method.get("zero-shot", []):
        out[c] = zero_shot(text_vecs, scale)
    for c in by_method.get("cache", []):
        out[c] = fit_cache(image_vecs, labels, text_vecs, scale, **options[c][1])
    if "head" in by_method:
        heads = by_method["head"]
        for c, clf in zip(heads, fit_heads(image_vecs, labels, text_vecs, scale, [options[c][1]["pull"] for c in heads])):
            out[c] = clf
    if "gda" in by_method:
        gdas = by_method["gda"]
        for c, clf in zip(gdas, fit_gdas(image_vecs, labels, text_vecs, scale, [options[c][1]["alpha"] for c in gdas])):
            out[c] = clf
    if "proker" in by_method:
        kernels = by_method["proker"]
        params = [(float(options[c][1]["beta"]), float(options[c][1]["lam"])) for c in kernels]
        for c, clf in zip(kernels, fit_prokers(image_vecs, labels, text_vecs, scale, params)):
            out[c] = clf
    return out  # type: ignore[return-value]


def beats(learned: np.ndarray, baseline: np.ndarray, sigmas: float = SIGN_TEST_SIGMAS) -> bool:
    """Whether ``learned`` ``[K]`` (right or wrong per review) is surely better than ``baseline`` ``[K]``.

    The best of many candidates looks better than it is on few reviews, and reviews taken most
    uncertain first are not a fair sample of the collection, so a plain "more right" is not
    enough: the reviews it alone gets right must outnumber those it alone gets wrong by three
    standard deviations of a fair coin (a one-sided sign test), and by at least two. Two
    deviations let a cache fitted on 10 uncertain reviews cost 3 points of handle accuracy on a
    replay (seed 2718); three kept every group within 0.5 points of zero-shot.
    """
    wins = int(np.sum(learned & ~baseline))
    losses = int(np.sum(~learned & baseline))
    return wins - losses >= max(2.0, sigmas * np.sqrt(wins + losses))


@dataclass
class GroupFit:
    """What ``learn`` decided for one group, and why (the ``learn --json`` entry)."""

    classifier: Classifier
    reviewed: int
    method: str
    params: dict
    cv_accuracy: dict  # {"zero_shot", "learned"}: out-of-fold accuracy on the reviews
    temperature: float
    ece: dict  # {"before", "after"}: out-of-fold, before and after temperature scaling
    note: str = ""

    def to_dict(self) -> dict:
        return {"reviewed": self.reviewed, "method": self.method, "params": self.params,
                "cv_accuracy": self.cv_accuracy, "temperature": round(self.temperature, 4),
                "ece": self.ece, "note": self.note}


def learn_group(image_vecs: np.ndarray, labels: np.ndarray, text_vecs: np.ndarray, scale: float,
                folds: int = FOLDS, seed: int = 0, methods: Sequence[str] | None = None,
                on_fold: Callable[[int, int], None] | None = None) -> GroupFit:
    """Fit one group from its reviews: ``image_vecs`` ``[K, D]`` (unit), ``labels`` ``[K]`` option indices.

    ``text_vecs`` ``[O, D]``: the zero-shot option vectors; ``methods``: the learned methods to
    consider (None: all of :data:`METHODS`). Returns the chosen classifier, already
    temperature-scaled, with the cross-validated evidence for the choice. ``on_fold(done, folds)``
    is called as each cross-validation fold finishes (the slow part), so a job's bar can move.
    """
    X = np.asarray(image_vecs, np.float32)
    y = np.asarray(labels, np.int64)
    n_options = len(text_vecs)
    base = zero_shot(text_vecs, scale)
    if len(y) < MIN_REVIEWS or len(np.unique(y)) < 2:
        why = (f"only {len(y)} reviews" if len(y) < MIN_REVIEWS else "reviews of a single option")
        return GroupFit(base, len(y), "zero-shot", {}, {"zero_shot": None, "learned": None}, 1.0,
                        {"before": None, "after": None}, note=f"{why}: kept zero-shot")
    k = fold_count(y, folds)
    fold = stratified_folds(y, k, seed)
    options = candidates(methods)
    oof = np.zeros((len(options), len(y), n_options), np.float64)
    for f in range(k):
        train, test = fold != f, fold == f
        if not test.any():
            continue
        fitted = build_all(options, X[train], y[train], text_vecs, scale) if train.any() else [base] * len(options)
        for c, clf in enumerate(fitted):
            oof[c][test] = clf.logits(X[test])
        if on_fold is not None:
            on_fold(f + 1, k)
    right = oof.argmax(axis=2) == y  # [C, K]
    correct = right.sum(axis=1)
    # Ties go to the simpler candidate (zero-shot is first); NLL breaks ties among learned ones.
    losses = np.array([nll(o, y) for o in oof])
    best = int(np.lexsort((losses, -correct))[0])
    if not beats(right[best], right[0]):
        best = 0
    method, params = options[best]
    temperature = fit_temperature(oof[best], y)
    clf = build(method, params, X, y, text_vecs, scale)
    clf = replace(clf, temperature=temperature)
    return GroupFit(
        clf, len(y), method, params,
        {"zero_shot": round(float(correct[0] / len(y)), 4), "learned": round(float(correct[best] / len(y)), 4)},
        temperature,
        {"before": round(ece(oof[best], y), 4), "after": round(ece(oof[best], y, temperature), 4)},
        note="" if best else "no learned method beat zero-shot in cross-validation: kept zero-shot",
    )


def fold_count(labels: np.ndarray, folds: int = FOLDS) -> int:
    """How many cross-validation folds ``learn_group`` deals the reviews ``[K]`` into."""
    y = np.asarray(labels, np.int64)
    k = int(min(folds, np.bincount(y)[np.unique(y)].max(), len(y)))
    return max(k, 2)


def out_of_fold_confidence(image_vecs: np.ndarray, labels: np.ndarray, text_vecs: np.ndarray, scale: float,
                           method: str, params: dict, temperature: float, folds: int = FOLDS,
                           seed: int = 0) -> np.ndarray:
    """Calibrated confidences ``[K, O]`` of each review ``[K, D]`` from a fit that did not see it.

    The fit ``learn_group`` chose (``method``, ``params``, ``temperature``) is refitted on the same
    folds without each fold in turn: what it says about a review is what it would say about an
    image it never saw, so the reviews can test it honestly.
    """
    X = np.asarray(image_vecs, np.float32)
    y = np.asarray(labels, np.int64)
    out = np.zeros((len(y), len(text_vecs)), np.float64)
    if len(y) == 0:
        return out
    if method == "zero-shot" or len(y) < MIN_REVIEWS or len(np.unique(y)) < 2:
        return softmax(zero_shot(text_vecs, scale).logits(X) / temperature)
    fold = stratified_folds(y, fold_count(y, folds), seed)
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        clf = build(method, params, X[train], y[train], text_vecs, scale)
        out[test] = softmax(clf.logits(X[test]) / temperature)
    return out


# ----------------------------------------------------------------------------- what to review next

def balanced_order(proposed: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Review order ``[N]`` (indices): most uncertain first, taking turns over the proposed values.

    ``proposed`` ``[N]`` option index of each proposal, ``margin`` ``[N]`` its calibrated top-two
    margin. The k-th round holds the k-th most uncertain proposal of every value, so a rare value
    is not starved by a common one whose proposals are all slightly less sure.
    """
    proposed = np.asarray(proposed)
    margin = np.asarray(margin, np.float64)
    by_margin = np.lexsort((margin, proposed))  # grouped by value, most uncertain first
    starts = np.searchsorted(proposed[by_margin], proposed[by_margin], side="left")
    rank = np.arange(len(proposed)) - starts  # rank of each within its value
    turn = np.empty(len(proposed), np.int64)
    turn[by_margin] = rank
    return np.lexsort((margin, turn))


def typical_representatives(vecs: np.ndarray, k: int, seed: int = 0, sample: int = 20_000) -> np.ndarray:
    """Indices ``[<=k]`` of the most typical vector of each of ``k`` k-means clusters, biggest cluster first.

    The cold-start diversity step (TypiClust-like): before any review, show one typical image of
    each region of the collection rather than many near-duplicates. FAISS does the clustering on a
    sample of at most ``sample`` vectors.
    """
    import faiss  # lazy: FAISS only for the k-means of a cold start

    vecs = np.ascontiguousarray(vecs, np.float32)
    k = int(min(k, len(vecs)))
    if k <= 0:
        return np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    train = vecs if len(vecs) <= sample else vecs[rng.choice(len(vecs), sample, replace=False)]
    kmeans = faiss.Kmeans(vecs.shape[1], k, niter=20, nredo=5, seed=seed, min_points_per_centroid=1,
                          verbose=False)
    kmeans.train(train)
    distance, cluster = kmeans.index.search(vecs, 1)
    distance, cluster = distance[:, 0], cluster[:, 0]
    sizes = np.bincount(cluster, minlength=k)
    reps = [np.flatnonzero(cluster == c)[np.argmin(distance[cluster == c])] for c in np.argsort(-sizes, kind="stable")
            if sizes[c]]
    return np.asarray(reps, np.int64)


# ----------------------------------------------------------------------------- prompt weights

def fit_prompt_weights(image_vecs: np.ndarray, labels: np.ndarray, prompt_vecs: np.ndarray, owner: np.ndarray,
                       weights: np.ndarray, scale: float, steps: int = 200, lr: float = 0.05,
                       pull: float = 0.01) -> np.ndarray:
    """Per-prompt weights ``[P]`` (≥ 0) for the ``weighted`` strategy, fitted on reviews.

    The ``weighted`` score of option ``o`` is ``Σ_p w_p cos(x, v_p) / Σ_p w_p`` over its prompts;
    weights are ``exp(θ)``, so they stay positive, start at ``weights`` and are pulled gently back
    to them (``pull``), and ``θ`` minimises the reviews' cross-entropy by Adam. A prompt whose
    weight ends near zero is one the reviews say hurts.
    """
    cos = np.asarray(image_vecs, np.float64) @ np.asarray(prompt_vecs, np.float64).T  # [K, P]
    owner = np.asarray(owner)
    y = np.asarray(labels, np.int64)
    n_options = int(owner.max()) + 1
    member = np.zeros((len(owner), n_options))
    member[np.arange(len(owner)), owner] = 1.0
    one_hot = np.zeros((len(y), n_options))
    one_hot[np.arange(len(y)), y] = 1.0
    theta0 = np.log(np.maximum(np.asarray(weights, np.float64), 1e-3))
    theta, m, v = theta0.copy(), np.zeros_like(theta0), np.zeros_like(theta0)
    for t in range(1, steps + 1):
        w = np.exp(theta)
        num, den = (cos * w) @ member, w @ member  # [K, O], [O]
        err = (softmax(scale * num / den) - one_hot) / len(y)  # dNLL/dlogits [K, O]
        # d score_o / d w_p = (cos_p - score_o) / den_o for p in option o
        grad_w = scale * np.einsum("ko,kp,po->p", err, cos, member / den) \
            - scale * np.einsum("ko,ko,po->p", err, num / den, member / den)
        grad = grad_w * w + 2 * pull * (theta - theta0)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        theta -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return np.exp(theta)
