"""Probe (validation months): condition annealing of a flare model's request."""
import json, sys, time
import numpy as np, torch
from solar_diffusion.evaluate import EvaluationConfig, load, generate_images
from solar_diffusion.flare_evaluation import (nearest_distances, flare_signature, disk_percentile, real_flare_frames,
                                              AWAY_RADIUS_PX)
from solar_diffusion.pipelines import NO_FLARE_CONDITION, rsun_px, disk_center_px, disk_mask

lo, hi = float(sys.argv[1]), float(sys.argv[2])  # gamma 1 below lo, 0 above hi (timesteps); hi<=lo: off
n = int(sys.argv[3]) if len(sys.argv) > 3 else 16
cfg = EvaluationConfig(model=__import__("os").environ.get("MODEL","solar_diffusion/models/default"), dataset="data/aia-browse2012-64-3ch", out="/tmp/x",
                       split="validation", num_per_class=n)
ev = load(cfg)
pipe = ev.pipe
orig = pipe.unet.forward
oc = pipe.unet.config.out_channels

def gamma(t):
    if hi <= lo:
        return 1.0
    return float(np.clip((hi - t) / (hi - lo), 0.0, 1.0))

def fwd(sample, timestep, class_labels=None, **kw):
    g = gamma(float(timestep))
    if g < 1:
        half = len(sample) // 2
        sample = sample.clone(); class_labels = class_labels.clone()
        sample[half:, oc] *= g
        class_labels[half:] = NO_FLARE_CONDITION + g * (class_labels[half:] - NO_FLARE_CONDITION)
    return orig(sample, timestep, class_labels=class_labels, **kw)

pipe.unet.forward = fwd
import os, solar_diffusion.flare_evaluation as fe
if os.environ.get("UNIFORM"):
    r_as = rsun_px(pipe.config.geometry) * pipe.config.geometry["plate_scale_arcsec"]
    def uni(pipe_, k, seed):
        rng = np.random.default_rng(seed + 7); out = []
        while len(out) < k:
            x, y = rng.uniform(-0.8, 0.8, 2) * r_as
            if np.hypot(x, y) < 0.8 * r_as: out.append((float(x), float(y)))
        return out
    fe.requested_positions = uni
t0 = time.time()
generate_images(ev)
print("gen s", round(time.time() - t0), file=sys.stderr)
size = pipe.unet.config.sample_size
geo = pipe.config.geometry
on_disk = disk_mask(size, rsun_px(geo, size), center=disk_center_px(geo, size))
train = ev.train_all.images
nn_g = nearest_distances(ev.generated, train)
held = ev.real_all.images[torch.from_numpy(np.random.default_rng(0).permutation(len(ev.real_all))[:200])]
nn_r = np.median(nearest_distances(held, train))
sig = flare_signature(ev.generated, ev.requested_px)
p99 = disk_percentile(ev.generated, on_disk)
rows, cols = np.mgrid[:size, :size]
away = disk_percentile(ev.generated, np.stack([on_disk & (np.hypot(cols - x, rows - y) > AWAY_RADIUS_PX) for x, y in ev.requested_px]))
out = {"lo": lo, "hi": hi, "real_nn": float(nn_r)}
q = np.median(nn_g[ev.labels == "quiet"])
for c in ev.classes:
    k = ev.labels == c
    out[c] = {"nn/held": round(float(np.median(nn_g[k]) / nn_r), 3), "nn/quiet": round(float(np.median(nn_g[k]) / q), 3),
              "sig131": round(float(sig[k, 1].mean()), 3), "sig94": round(float(sig[k, 2].mean()), 3),
              "away131": round(float(away[k, 1].mean()), 3), "away94": round(float(away[k, 2].mean()), 3)}
print(json.dumps(out))
