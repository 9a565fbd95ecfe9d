"""Run under ``accelerate launch`` (tests/test_multiprocess.py): ``end_run`` on two processes whose
process-group teardown never returns, as gloo's sometimes does (pytorch issue 75097)."""

import sys
import time
from pathlib import Path


def main(out):
    from solar_diffusion.training.train_ddpm import end_run, make_accelerator

    accelerator = make_accelerator(Path(out).parent, 0)
    Path(f"{out}.{accelerator.process_index}").write_text("saved")  # the run's results, written before the end
    accelerator.end_training = lambda: time.sleep(600)  # a teardown that hangs
    end_run(accelerator, grace_s=2)
    Path(f"{out}.{accelerator.process_index}.returned").write_text("")  # never reached


if __name__ == "__main__":
    main(sys.argv[1])
