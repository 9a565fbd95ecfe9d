"""Dataset-builder throughput: images/s for browse JPEG -> 256 px and for the level-1 FITS path.

Each path is timed next to its baseline in the same process: decoding the file alone (PIL for
JPEG, astropy for FITS), so the ratio shows what labelling-free preprocessing costs on top.

    python benchmarks/bench_dataset_builder.py [--n 200] [--json reports/bench_dataset_builder.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from solar_diffusion.dataset_builder.images import crop_and_resize, read_frame
from solar_diffusion.files import atomic_write

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def rate(fn, items, repeat=1):
    start = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return repeat * len(items) / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="browse files to time")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from astropy.io import fits
    from PIL import Image
    from sunpy.data.test import get_test_filepath

    jpegs = sorted((SHARED / "sdo_browse_2012" / "images").glob("*.jpg"))[: args.n]
    fits_file = Path(get_test_filepath("aia_171_level1.fits"))
    with fits.open(fits_file) as hdul:
        fits_shape = hdul[0].data.shape

    def decode_jpeg(p):
        with Image.open(p) as img:
            np.asarray(img)

    def browse_256(p):
        crop_and_resize(read_frame(p), 256)

    def decode_fits(p):
        fits.getdata(p)

    def fits_path(p):
        crop_and_resize(read_frame(p), 256)

    results = {
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "browse_jpeg_to_256": {
            "file": f"{len(jpegs)} real 472x472 RGB JPEGs (sdo_browse_2012, ~31 kB each)",
            "baseline_decode_images_per_s": rate(decode_jpeg, jpegs),
            "images_per_s": rate(browse_256, jpegs),
        },
        "level1_fits_to_256": {
            "file": f"sunpy's aia_171_level1.fits ({fits_shape[0]}x{fits_shape[1]} px, "
                    f"{fits_file.stat().st_size / 1024:.0f} kB; a full-resolution level-1 file is 4096x4096)",
            "baseline_decode_images_per_s": rate(decode_fits, [fits_file] * 20, repeat=5),
            "images_per_s": rate(fits_path, [fits_file] * 20, repeat=5),
        },
    }
    for key in ("browse_jpeg_to_256", "level1_fits_to_256"):
        r = results[key]
        r["fraction_of_decode_rate"] = r["images_per_s"] / r["baseline_decode_images_per_s"]
        print(f"{key}: {r['images_per_s']:.1f} images/s (decode alone {r['baseline_decode_images_per_s']:.1f}/s, "
              f"ratio {r['fraction_of_decode_rate']:.2f}) - {r['file']}")
    if args.json:
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=1)))
    return results


if __name__ == "__main__":
    main()
