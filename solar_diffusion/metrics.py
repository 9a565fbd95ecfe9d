"""Metrics of generated images: a physical statistic on pixels, and distances, clusters, F1 and
precision/recall on feature vectors (rows = images), and their intervals (``bootstrap``, one
method for every statistic; ``wilson_interval`` for proportions).

Feature vectors come from any extractor (the solar-domain encoder, Inception-V3 where its
weights are available); the metrics do not care which. torchmetrics computes the polynomial
kernel, scikit-learn the cluster scores, the two-sample classifier and F1; the Fréchet distance
is computed here in the image-count dimension (torchmetrics' d x d square root takes seconds per
call at d = 2,048, too slow to bootstrap), and is checked against torchmetrics in the tests.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from solar_diffusion.pipelines import disk_mask


def peak_brightness(images, rsun_px: float, top_fraction: float = 0.002, channel: int = 0) -> np.ndarray:
    """Per image, the mean model-space value of the brightest ``top_fraction`` of on-disk pixels
    (at least one pixel; ``top_fraction=0``: the brightest pixel): the brightness of the
    brightest active region or flare kernel, the thing a flare of a larger class should raise.

    ``images`` are (N, C, H, W) in model space, disk-centred, with radius ``rsun_px``; pixels within
    0.95 of it count as on the disk.

    >>> quiet = -np.ones((1, 1, 8, 8)); flare = quiet.copy(); flare[..., 4, 4] = 0.9
    >>> peak_brightness(np.concatenate([quiet, flare]), rsun_px=3.0).round(3).tolist()
    [-1.0, 0.9]
    >>> flare[..., 0, 0] = 1.0  # off the disk: ignored
    >>> peak_brightness(flare, rsun_px=3.0, top_fraction=0).tolist()
    [0.9]
    """
    images = np.asarray(images)
    on_disk = images[:, channel][:, disk_mask(images.shape[-1], rsun_px, 0.95)]
    k = max(1, int(round(top_fraction * on_disk.shape[1])))
    return np.sort(on_disk, axis=1)[:, -k:].mean(axis=1)


# ------------------------------------------------------------------------------------------
# distances between two sets of feature vectors
# ------------------------------------------------------------------------------------------


def frechet_distance(a, b) -> float:
    """Fréchet distance between Gaussians fitted to feature rows ``a`` and ``b`` (FID's formula):
    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr sqrt(S_a S_b)``.

    The trace of the matrix square root is computed from the eigenvalues of the small
    (n_a x n_a) matrix ``X_a^T X_b X_b^T X_a`` of the centred rows, which has the same non-zero
    eigenvalues as ``S_a S_b``; exact, and fast when there are fewer images than features
    (2,048-d Inception features of a few hundred images, bootstrapped hundreds of times).

    >>> rng = np.random.default_rng(0); x = rng.normal(size=(500, 4))
    >>> abs(frechet_distance(x, x)) < 1e-6, round(frechet_distance(x, x + 1), 2)
    (True, 4.0)
    """
    a, b = _rows(a), _rows(b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 rows in each set, got {len(a)} and {len(b)}")
    xa, xb = (a - a.mean(0)) / np.sqrt(len(a) - 1), (b - b.mean(0)) / np.sqrt(len(b) - 1)
    if len(a) <= a.shape[1]:
        cross = xa @ xb.T  # (n_a, n_b)
        eigenvalues = np.linalg.eigvalsh(cross @ cross.T)
    else:
        cov_a, cov_b = xa.T @ xa, xb.T @ xb
        eigenvalues = np.linalg.eigvals(cov_a @ cov_b).real
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    mean_term = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    return mean_term + float((xa**2).sum() + (xb**2).sum() - 2 * trace_sqrt)


def kernel_distance(a, b, degree: int = 3, gamma: float | None = None, coef: float = 1.0) -> float:
    """KID: the unbiased estimate of the squared MMD with KID's polynomial kernel
    ``(x.y / d + 1) ** 3``, for sets of any sizes (torchmetrics' own estimate needs equal sizes).
    Unbiased, so about 0 (and sometimes below) for two samples of one distribution.

    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(200, 4)), rng.normal(size=(300, 4))
    >>> abs(kernel_distance(x, y)) < 0.05, kernel_distance(x, y + 1) > 1
    (True, True)
    """
    from torchmetrics.image.kid import poly_kernel

    a, b = torch.from_numpy(_rows(a)), torch.from_numpy(_rows(b))
    m, n = len(a), len(b)
    if m < 2 or n < 2:
        raise ValueError(f"KID needs at least 2 rows in each set, got {m} and {n}")
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    k_aa, k_bb = poly_kernel(a, a, degree, gamma, coef), poly_kernel(b, b, degree, gamma, coef)
    k_ab = poly_kernel(a, b, degree, gamma, coef)
    within_a = (k_aa.sum() - k_aa.diagonal().sum()) / (m * (m - 1))
    within_b = (k_bb.sum() - k_bb.diagonal().sum()) / (n * (n - 1))
    return float(within_a + within_b - 2 * k_ab.mean())


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union
    of balls reaching every point's k-th nearest neighbour in its own set. Precision: the
    fraction of ``fake`` inside the real manifold (fidelity); recall: the fraction of ``real``
    inside the fake manifold (diversity).

    >>> rng = np.random.default_rng(0); x = rng.normal(size=(300, 2))
    >>> precision, recall = precision_recall(x, x * 0.1)  # collapsed fakes: realistic, not diverse
    >>> precision, recall < 0.1
    (1.0, True)
    """
    real, fake = torch.from_numpy(_rows(real)), torch.from_numpy(_rows(fake))
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} rows in each set")

    def radii(x):
        return torch.cdist(x, x).kthvalue(k + 1, dim=1).values  # k-th neighbour, self excluded

    inside_real = (torch.cdist(fake, real) <= radii(real)[None, :]).any(dim=1)
    inside_fake = (torch.cdist(real, fake) <= radii(fake)[None, :]).any(dim=1)
    return round(float(inside_real.double().mean()), 4), round(float(inside_fake.double().mean()), 4)


def two_sample_accuracy(a, b, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a logistic regression told to separate ``a`` from ``b``
    (standardised features, classes weighted equally): about 0.5 when the sets cannot be told
    apart, near 1 when they can.

    >>> rng = np.random.default_rng(0); x = rng.normal(size=(200, 3))
    >>> two_sample_accuracy(x[:100], x[100:]) < 0.65, two_sample_accuracy(x, x + 3) > 0.95
    (True, True)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = _rows(a), _rows(b)
    x, y = np.concatenate([a, b]), np.r_[np.zeros(len(a)), np.ones(len(b))]
    folds = min(folds, len(a), len(b))
    if folds < 2:
        raise ValueError(f"a two-sample test needs at least 2 rows in each set, got {len(a)} and {len(b)}")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    predicted = cross_val_predict(classifier, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return float(balanced_accuracy_score(y, predicted))


#: The range of each figure of ``cluster_metrics`` (``bootstrap``'s ``bounds``).
CLUSTER_RANGES = {"silhouette": (-1.0, 1.0), "davies_bouldin": (0.0, math.inf), "calinski_harabasz": (0.0, math.inf)}


def cluster_metrics(features, labels) -> dict:
    """How well ``labels`` split the feature rows into clusters: silhouette (higher is better,
    -1..1), Davies-Bouldin (lower is better) and Calinski-Harabasz (higher is better).

    >>> rng = np.random.default_rng(0); labels = np.repeat([0, 1], 50)
    >>> apart = rng.normal(size=(100, 2)) + 10 * labels[:, None]
    >>> cluster_metrics(apart, labels)["silhouette"] > 0.8
    True
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    features, labels = _rows(features), np.asarray(labels)
    if len(set(labels.tolist())) < 2:
        raise ValueError("cluster metrics need at least two labels")
    return {"silhouette": float(silhouette_score(features, labels)),
            "davies_bouldin": float(davies_bouldin_score(features, labels)),
            "calinski_harabasz": float(calinski_harabasz_score(features, labels))}


def f1_scores(true, predicted, classes) -> dict:
    """Per-class F1 over ``classes`` and their macro average, as ``{"macro": .., class: ..}``.

    >>> f1_scores(["M", "M", "quiet"], ["M", "quiet", "quiet"], ["quiet", "M"])
    {'quiet': 0.667, 'M': 0.667, 'macro': 0.667}
    """
    from sklearn.metrics import f1_score

    per_class = f1_score(list(true), list(predicted), labels=list(classes), average=None, zero_division=0)
    scores = {c: round(float(s), 3) for c, s in zip(classes, per_class)}
    scores["macro"] = round(float(np.mean(per_class)), 3)
    return scores


# ------------------------------------------------------------------------------------------
# intervals
# ------------------------------------------------------------------------------------------


def bootstrap(statistic, *samples, n_boot: int = 200, level: float = 0.95, seed: int = 0,
              bounds: tuple | dict = (-math.inf, math.inf)) -> dict:
    """``statistic(*samples)`` with a bootstrap interval re-centred on the estimate: the one interval
    of every statistic in the evaluation (Fréchet distance, KID, F1, means, medians, differences,
    cluster scores); ``wilson_interval`` is for proportions.

    Each sample (array, rows along axis 0) is resampled with replacement on its own; pair rows
    that belong together (true and predicted labels, features and their labels) in one sample,
    or resample their indices. The statistic is computed on each of ``n_boot`` resamples
    (a degenerate resample that raises ``ValueError``, such as one class left, is skipped), and the
    interval is the central ``level`` spread of those values shifted by ``estimate - median``,
    clipped to ``bounds``, the range the statistic can take (``(0, 1)`` for an F1, ``(0, inf)``
    for a Fréchet distance; a dict of ranges by name for a statistic with named figures).

    Why: a resample with replacement duplicates rows, which moves a biased statistic (it inflates
    the Fréchet distance and the cluster scores), so plain percentiles can miss the estimate (an
    FD of 28.4 with [31.4, 36.1]). The resamples' spread still measures how much the statistic
    varies from sample to sample, and centring it on the estimate removes the duplicates' shift, so
    the interval always contains the estimate and describes the statistic at these sample sizes
    (for a biased one such as FD, not its value at infinitely many images). Like any bootstrap at
    small n it covers a little less than ``level``: about 0.90-0.92 for a nominal 0.95 with 50 rows
    (measured on a known answer in the tests).

    Returns value, low, high, level, n (rows per sample) and method; a statistic that returns a
    dict of named figures gets one such interval per name.

    >>> x = np.random.default_rng(0).normal(size=400)
    >>> r = bootstrap(np.mean, x, n_boot=300)
    >>> r["low"] < r["value"] < r["high"], r["n"]
    (True, [400])
    >>> labels = np.repeat([0, 1], 20); rows = labels[:, None] + x[:40, None]
    >>> scores = bootstrap(lambda i: cluster_metrics(rows[i], labels[i]), np.arange(40), n_boot=50,
    ...                    bounds=CLUSTER_RANGES)
    >>> sorted(scores), all(s["low"] <= s["value"] <= s["high"] for s in scores.values())
    (['calinski_harabasz', 'davies_bouldin', 'silhouette'], True)
    """
    rng = np.random.default_rng(seed)
    samples = [np.asarray(s) for s in samples]
    estimate = statistic(*samples)
    named = estimate if isinstance(estimate, dict) else {None: estimate}
    draws = {name: [] for name in named}
    for _ in range(n_boot):
        drawn = [s[rng.integers(0, len(s), len(s))] for s in samples]
        try:
            resampled = statistic(*drawn)
        except ValueError:  # a degenerate resample (e.g. one class left): skip it
            continue
        for name, values in draws.items():
            values.append(float(resampled[name] if name is not None else resampled))
    tail = (1 - level) / 2 * 100
    intervals = {}
    for name, value in named.items():
        values, value = np.array(draws[name]), float(value)
        low = high = np.nan
        if len(values):
            low, high = np.percentile(values, [tail, 100 - tail]) + value - np.median(values)
            lowest, highest = bounds.get(name, (-math.inf, math.inf)) if isinstance(bounds, dict) else bounds
            low, high = max(low, min(lowest, value)), min(high, max(highest, value))  # rounding may put it out
        intervals[name] = {"value": value, "low": float(low), "high": float(high), "level": level,
                           "n": [len(s) for s in samples],
                           "method": f"bootstrap ({len(values)} resamples), re-centred on the estimate"}
    return intervals if isinstance(estimate, dict) else intervals[None]


def wilson_interval(successes: int, n: int, level: float = 0.95) -> dict:
    """A proportion with its Wilson score interval.

    >>> r = wilson_interval(45, 50); round(r["value"], 2), round(r["low"], 3), round(r["high"], 3)
    (0.9, 0.786, 0.957)
    """
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"value": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half), "level": level, "n": [n],
            "method": "Wilson score"}


def _rows(x) -> np.ndarray:
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"feature rows must be 2-D (images, features), got shape {x.shape}")
    return x
