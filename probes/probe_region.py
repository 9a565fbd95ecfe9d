import numpy as np, torch
from solar_diffusion.evaluate import EvaluationConfig, load, generate_images
from solar_diffusion.pipelines import rsun_px, disk_center_px, disk_mask
cfg = EvaluationConfig(model="solar_diffusion/models/default", dataset="data/aia-browse2012-64-3ch", out="/tmp/x",
                       split="validation", num_per_class=32)
ev = load(cfg); generate_images(ev)
geo = ev.pipe.config.geometry
m = torch.from_numpy(disk_mask(64, rsun_px(geo, 64), 1.02, disk_center_px(geo, 64))).double()
train = ev.train_all.images.double()
def parts(x):
    x = x.double()
    d = torch.cdist(x.flatten(1), train.flatten(1)) / np.sqrt(train[0].numel())
    idx = d.argmin(1)
    diff2 = (x - train[idx]).pow(2).mean(1)  # N,H,W
    n = 64 * 64
    on = (diff2 * m).sum((1, 2)) / n; off = (diff2 * (1 - m)).sum((1, 2)) / n
    return d.min(1).values, on, off
held = ev.real_all.images[:200]
dh, onh, offh = parts(held)
print("held median nn", dh.median().item(), "on-disk ms", onh.median().item(), "off-disk ms", offh.median().item())
dg, ong, offg = parts(ev.generated)
for c in ["quiet", "B", "C", "M", "X"]:
    k = torch.from_numpy(ev.labels == c)
    print(c, "nn", round(dg[k].median().item(), 3), "on ms", round(ong[k].median().item(), 4), "off ms", round(offg[k].median().item(), 4))
