"""Train the flare-class classifier (``FlareClassifier``) that is also the evaluation's domain encoder.

    accelerate launch training/train_classifier.py --dataset data/aia171-browse2012-64 --out runs/encoder

Trains on the train split only; the validation split chooses the epoch kept (best macro-F1 over
the classes the validation split has, plus the degradation head's accuracy with ``--degradations``); the test split is never read. Frames are drawn with
weight ``count(label) ** -class_balance`` (flares are rare) and rotated by a few degrees about
disk centre (no flips: see ``train_ddpm.py``). Writes the encoder with ``save_pretrained`` and
``training_metrics.json`` (per-epoch loss and validation F1, the kept epoch, the class counts).
``fit_classifier`` is the same training for callers that add images (the experiments).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from solar_diffusion.encoder import FlareClassifier
from solar_diffusion.metrics import f1_scores
from solar_diffusion.pipelines import ClipLogNormalization
from solar_diffusion.splits import dataset_argument, dataset_info, model_space_split


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, type=dataset_argument,
                   help="folder made by solar-diffusion build-dataset, or its Hub dataset id")
    p.add_argument("--out", dest="output_dir", required=True, help="output folder of the run")
    p.add_argument("--size", dest="size", type=int, default=None,
                   help="input image size in pixels (default: the dataset's)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--class-balance", type=float, default=0.5,
                   help="draw frames with weight count(label)^-b (0: as in the data, 1: classes equally often)")
    p.add_argument("--augment-rotation", type=float, default=3.0, help="max rotation about disk centre, degrees")
    p.add_argument("--widths", default="16,32,64,128", help="channels of the strided conv stages")
    p.add_argument("--stem", type=int, default=1,
                   help="a first convolution of this kernel and stride (4: 256 px images cost about what 64 px do)")
    p.add_argument("--feature-dim", type=int, default=128, help="size of the domain embedding")
    p.add_argument("--degradations", action="store_true",
                   help="also train a head that tells real frames from blurred and noisy ones (features that "
                        "see fine structure: the encoder that judges a cascade's super-resolution)")
    p.add_argument("--seed", type=int, default=0)
    return p


def fit_classifier(train, validation, id2label: dict, normalization, args, accelerator=None, *,
                   loss_balance: float = 0.0, augment=None, samples_per_epoch: int | None = None, log: bool = True):
    """Train a ``FlareClassifier`` on ``train`` (``LabelledImages``); keep the epoch with the best
    validation macro-F1, plus the degradation head's accuracy where it has one (the last epoch
    when ``validation`` is None). Returns (model, history).

    Frames are drawn with weight ``count ** -args.class_balance``, ``samples_per_epoch`` per epoch
    (default: as many as ``train`` has, so that callers adding images can keep the number of
    optimiser steps); the loss weighs a class by ``count ** -loss_balance`` (mean weight 1 over
    the frames); ``augment`` (a function of a model-space batch) runs after the rotation. With
    ``args.degradations`` the degradation head (``random_degradation``) adds its cross-entropy to the
    loss. Where ``train`` has ``covariates`` the classifier reads them beside each image (and
    ``validation`` must have them too). ``log`` prints each epoch's loss and validation score."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from solar_diffusion.training.data import DEGRADATIONS, BalancedSampler, random_degradation, random_rotation

    accelerator = accelerator or Accelerator()
    set_seed(args.seed)
    label2id = {v: k for k, v in id2label.items()}
    unknown = sorted(set(train.labels) - set(label2id))
    if unknown:
        raise ValueError(f"training labels {unknown} are not in the classifier's classes {list(label2id)}")
    y = torch.tensor([label2id[v] for v in train.labels])
    model = FlareClassifier(id2label=id2label, sample_size=train.images.shape[-1], in_channels=train.images.shape[1],
                            widths=tuple(int(w) for w in str(args.widths).split(",")), feature_dim=args.feature_dim,
                            normalization=normalization.to_dict(),
                            degradations=DEGRADATIONS if getattr(args, "degradations", False) else (),
                            covariates=0 if train.covariates is None else train.covariates.shape[1],
                            stem=args.stem)
    covariates = torch.zeros(len(y), 0) if train.covariates is None else torch.as_tensor(train.covariates).float()
    dataset = torch.utils.data.TensorDataset(train.images, covariates, y)
    sampler = BalancedSampler(y.numpy(), args.class_balance, args.seed, samples_per_epoch)
    counts = torch.bincount(y, minlength=len(id2label)).double()
    weights = torch.where(counts > 0, counts.clamp(min=1) ** -float(loss_balance), 0.0)
    weights = (weights * len(y) / (weights * counts).sum()).float()
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(loader))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    val_classes = [c for c in id2label.values() if validation is not None and c in set(validation.labels)]
    history, best, best_state = [], -1.0, None
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        total, seen = 0.0, 0
        for images, extra, labels in loader:
            extra = extra if train.covariates is not None else None
            if args.augment_rotation:
                images = random_rotation(images, args.augment_rotation)
            if augment is not None:
                images = augment(images)
            class_weights = weights.to(images.device) if loss_balance else None
            if getattr(args, "degradations", False):
                images, kinds = random_degradation(images)
                logits, degradation_logits = model(images, with_degradation=True, covariates=extra)
                loss = F.cross_entropy(logits, labels, weight=class_weights) + F.cross_entropy(degradation_logits, kinds)
            else:
                loss = F.cross_entropy(model(images, covariates=extra), labels, weight=class_weights)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            total, seen = total + loss.item() * len(labels), seen + len(labels)
        row = {"epoch": epoch + 1, "loss": total / seen}
        unwrapped = accelerator.unwrap_model(model)
        if val_classes:
            predicted = unwrapped.predict(validation.images, validation.covariates)
            row["validation_macro_f1"] = f1_scores(validation.labels, predicted, val_classes)["macro"]
        if validation is not None and unwrapped.degradation_head is not None:
            row["validation_degradation_accuracy"] = degradation_accuracy(unwrapped, validation.images, args.seed,
                                                                            validation.covariates)
        # the epoch kept: the best validation macro-F1, plus the degradation head's accuracy where it has one
        score = row.get("validation_macro_f1", epoch) + row.get("validation_degradation_accuracy", 0.0)
        if score > best:
            best, best_state = score, {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
            row["kept"] = True
        history.append(row)
        if log:
            accelerator.print(json.dumps(row))
    model = accelerator.unwrap_model(model)
    model.load_state_dict(best_state)
    return model.eval(), history


@torch.no_grad()
def degradation_accuracy(model, images: torch.Tensor, seed: int, covariates=None, batch_size: int = 64) -> float:
    """The fraction of ``images``, each degraded at random (``random_degradation``, drawn from
    ``seed``), whose degradation the model's degradation head names."""
    from solar_diffusion.training.data import random_degradation

    model.eval()
    right, device = 0, next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the training's draws go on
        torch.manual_seed(seed)
        for start in range(0, len(images), batch_size):
            degraded, kinds = random_degradation(images[start:start + batch_size].to(device))
            extra = None if covariates is None else torch.as_tensor(covariates[start:start + batch_size]).float()
            right += int((model(degraded, with_degradation=True, covariates=extra)[1].argmax(1) == kinds).sum())
    return round(right / len(images), 4)


def main(argv=None) -> Path:
    args = build_parser().parse_args(argv)
    from accelerate import Accelerator

    from solar_diffusion import label_vocabulary

    accelerator = Accelerator()
    info = dataset_info(args.dataset)
    normalization = ClipLogNormalization.for_unit(info["unit"])
    image_size = args.size or info["config"]["size"]
    train = model_space_split(args.dataset, "train", normalization, image_size)
    try:
        validation = model_space_split(args.dataset, "validation", normalization, image_size)
    except ValueError:
        accelerator.print("no validation split: the last epoch is kept")
        validation = None
    id2label = label_vocabulary(sorted(set(train.labels)))
    model, history = fit_classifier(train, validation, id2label, normalization, args, accelerator)
    out = Path(args.output_dir)
    if accelerator.is_main_process:
        model.save_pretrained(str(out))
        kept = [row for row in history if row.get("kept")][-1]
        record = {"dataset": str(args.dataset), "args": vars(args), "train_counts": train.counts(),
                  "validation_counts": validation.counts() if validation is not None else {},
                  "kept_epoch": kept["epoch"], "history": history}
        (out / "training_metrics.json").write_text(json.dumps(record, indent=1))
    accelerator.end_training()
    return out


if __name__ == "__main__":
    main()
