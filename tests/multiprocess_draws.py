"""Run under ``accelerate launch`` (tests/test_multiprocess.py): the frames each rank draws in two
epochs of ``train_ddpm``'s own loader, as accelerate prepares it."""

import argparse
import json
import sys
from pathlib import Path


def main(dataset, out, class_balance):
    import torch

    from solar_diffusion.splits import load_split
    from solar_diffusion.training.train_ddpm import build_parser, make_accelerator, training_loader

    args = build_parser().parse_args(["--dataset", dataset, "--out", str(Path(out).parent), "--train-batch-size",
                                      "2", "--class-balance", str(class_balance), "--seed", "3", "--logger", "none"])
    accelerator = make_accelerator(Path(out).parent, args.seed)
    labels = load_split(dataset, "train", columns=("flare_class",))["flare_class"]
    positions = list(range(len(labels)))  # the frames' positions in the split stand in for the frames

    def collate(rows):
        return torch.tensor(rows)

    prepared = accelerator.prepare(training_loader(positions, labels, collate, args.train_batch_size, args.seed,
                                                   args.class_balance))
    draws = {}
    for epoch in (0, 1):
        prepared.set_epoch(epoch)
        mine = torch.tensor([batch.tolist() for batch in prepared])
        draws[epoch] = accelerator.gather(mine[None]).tolist()  # (ranks, batches, batch size)
    if accelerator.is_main_process:
        Path(out).write_text(json.dumps({"processes": accelerator.num_processes,
                                         "distributed_type": str(accelerator.distributed_type), "draws": draws}))
    accelerator.wait_for_everyone()  # leave the process group together, as train_ddpm does (gloo can abort otherwise)
    accelerator.end_training()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("out")
    parser.add_argument("--class-balance", type=float, default=0.0)
    main(**vars(parser.parse_args(sys.argv[1:])))
