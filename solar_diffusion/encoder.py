"""The solar-domain encoder: a flare-class classifier whose penultimate features embed AIA images.

Inception features judge single-channel EUV images poorly (Cherti et al. 2023), so Fréchet
distances, cluster metrics and conditioning F1 are also computed in the feature space of a
classifier trained on real AIA frames (``training/train_classifier.py``). It saves and loads
like a diffusers model (``save_pretrained`` / ``from_pretrained``); each bundled model keeps the
encoder trained on its data in ``<model>/evaluation_encoder`` (``defaults.model_encoder``).

>>> encoder = FlareClassifier(id2label={0: "quiet", 1: "M"}, sample_size=16, widths=(4, 8), feature_dim=8)
>>> tuple(encoder.features(torch.zeros(3, 1, 32, 32)).shape), encoder.predict(torch.zeros(1, 1, 16, 16)).shape
((3, 8), (1,))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from solar_diffusion.defaults import BUNDLED_ENCODER
from solar_diffusion.pipelines import ClipLogNormalization
from solar_diffusion.splits import resize

class FlareClassifier(ModelMixin, ConfigMixin):
    """A small CNN over model-space images: strided conv stages, then mean and max pooling
    (a flare is a small bright spot that averaging alone would wash out), a feature layer (the
    domain embedding) and a linear head over ``id2label``. Batch (not group) normalisation, so
    that at evaluation the features keep each image's absolute brightness and sharpness, which
    a per-image normalisation would divide out.

    ``degradations``: names of a second head on the same features, trained to tell a real frame
    from one blurred or with noise added (``training.data.random_degradation``), so that the
    embedding sees fine structure, which flare classes alone need not (a 256 px encoder that judges
    super-resolution must tell blur and grain from loops). Empty: no such head.

    ``covariates``: numbers per image the head reads beside the image features (a forecaster's
    flare history), as a linear term of their own added to the logits, outside the dropout, so
    that a few numbers are not drowned among ``feature_dim`` image features; the features, the
    embedding, stay the image's alone. 0: none.

    ``stem``: a first convolution with this kernel and stride (a patchify stem), so that a 256 px
    image costs the stages about what a 64 px one does at ``stem=4``, with the full-resolution
    pixels still seen by a learnt layer rather than averaged away by resizing. 1: none."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, id2label: dict, sample_size: int = 64, in_channels: int = 1,
                 widths: tuple = (16, 32, 64, 128), feature_dim: int = 128, dropout: float = 0.2,
                 normalization: dict | None = None, degradations: tuple = (), covariates: int = 0, stem: int = 1):
        super().__init__()
        layers, previous = [], in_channels
        if stem > 1:
            if sample_size % stem:
                raise ValueError(f"a stem of {stem} px does not tile {sample_size} px images")
            layers += [nn.Conv2d(in_channels, widths[0], stem, stride=stem), nn.BatchNorm2d(widths[0]), nn.SiLU()]
            previous = widths[0]
        for width in widths:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.SiLU(),
                       nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.SiLU()]
            previous = width
        self.stages = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Linear(2 * previous, feature_dim), nn.SiLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, len(id2label)))
        self.covariate_head = nn.Linear(covariates, len(id2label), bias=False) if covariates else None
        self.degradation_head = nn.Linear(feature_dim, len(degradations)) if degradations else None

    @property
    def id2label(self) -> dict:
        return {int(k): v for k, v in self.config.id2label.items()}

    @property
    def normalization(self) -> ClipLogNormalization:
        return ClipLogNormalization.from_dict(self.config.normalization)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The domain embedding (N, feature_dim) of model-space images (resized if need be)."""
        x = self.stages(resize(images.to(self.dtype), self.config.sample_size))
        return self.embed(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))

    def forward(self, images: torch.Tensor, with_degradation: bool = False, covariates: torch.Tensor | None = None):
        """Class logits (N, num_labels); with ``with_degradation`` also the degradation head's
        logits (N, len(degradations)) of the same features. ``covariates`` (N, covariates): a
        classifier trained with them needs them."""
        features = self.features(images)
        if self.config.covariates:
            if covariates is None or covariates.shape[-1] != self.config.covariates:
                raise ValueError(f"this classifier reads {self.config.covariates} covariates per image beside it, "
                                 f"got {None if covariates is None else covariates.shape[-1]}")
        logits = self.head(features)
        if self.covariate_head is not None:
            logits = logits + self.covariate_head(covariates.to(features))
        if not with_degradation:
            return logits
        if self.degradation_head is None:
            raise ValueError("this encoder has no degradation head (trained without --degradations)")
        return logits, self.degradation_head(features)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, covariates=None, batch_size: int = 256) -> np.ndarray:
        """Predicted label names of model-space images (and their ``covariates``, if it reads any)."""
        names = self.id2label
        return np.array([names[int(i)] for i in self.predict_proba(images, covariates, batch_size).argmax(1)],
                        dtype=object)

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor, covariates=None, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (N, num_labels; columns in ``id2label`` order) of model-space images
        (and their ``covariates``, if it reads any)."""
        extra = None if covariates is None else torch.as_tensor(np.asarray(covariates), dtype=torch.float32)
        out = [self(b, covariates=None if extra is None else extra[start:start + len(b)]).softmax(1).float()
               for start, b in zip(range(0, len(images), batch_size), _batches(images, batch_size, self))]
        return torch.cat(out).cpu().numpy()

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """``features`` of many images, in batches, as float64 numpy (N, feature_dim)."""
        return torch.cat([self.features(b) for b in _batches(images, batch_size, self)]).double().cpu().numpy()


def _batches(images, batch_size, model):
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size].to(device)


def load_encoder(path=None) -> FlareClassifier:
    """The encoder saved at ``path`` (default: the bundled one), in eval mode."""
    path = Path(path) if path else BUNDLED_ENCODER
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} holds no saved encoder (config.json missing): train one with "
                                "training/train_classifier.py")
    return FlareClassifier.from_pretrained(str(path)).eval()
