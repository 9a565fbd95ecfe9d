"""The fine-structure measures on real AIA frames: the real 256 px disk against its 64 px version
upsampled (bicubic blurs: little power at high frequencies) and against bicubic plus noise shaped
to the real spectrum (the power is back, the structure is not: its band-passed kurtosis is far
below the real frames')."""

import numpy as np
import pytest
import torch

from solar_diffusion.fine_structure import (BANDS, band_passed_kurtosis, band_powers, bicubic,
                                            bicubic_plus_shaped_noise, block_peak, disk_power_spectrum)

FRAMES = ("20120307_0000_aia_171_131_094.jpg", "20120309_0400_aia_171_131_094.jpg",
          "20120804_1000_aia_171_131_094.jpg", "20121023_0400_aia_171_131_094.jpg")


@pytest.fixture(scope="module")
def real_256(shared_data):
    from solar_diffusion.dataset_builder.images import crop_and_resize, read_frame
    from solar_diffusion.splits import downsample

    folder = shared_data / "sdo_browse_2012" / "images"
    paths = [folder / name for name in FRAMES if (folder / name).exists()]
    if len(paths) < 3:
        pytest.skip(f"the shared 2012 browse frames are not in {folder}")
    frames = [read_frame(p, channels=("171", "131", "94")) for p in paths]
    images, radii = zip(*(crop_and_resize(f, 256, limb_mask=None) for f in frames))
    data = torch.from_numpy(np.stack(images))  # uint8 browse brightness, as the builder stores it
    low = downsample(data, 64).float()
    return data.float() / 127.5 - 1, low / 127.5 - 1, float(np.median(radii))


def test_the_controls_look_wrong_on_real_frames(real_256):
    high, low, radius = real_256
    center = (127.5, 127.5)
    real = disk_power_spectrum(high.numpy(), center, radius)
    blurred = bicubic(low, 256)
    noisy = bicubic_plus_shaped_noise(low, 256, real.mean(axis=0), center, radius)
    bands = {name: band_powers(disk_power_spectrum(x.numpy(), center, radius), BANDS).mean(axis=0)
             / band_powers(real, BANDS).mean(axis=0) for name, x in (("bicubic", blurred), ("noise", noisy))}
    assert (bands["bicubic"][:, 3] < 0.5).all()  # 64-128 cycles: the blur has lost the fine structure
    assert (np.abs(np.log(bands["noise"][:, 2:])) < np.log(1.5)).all()  # the shaped noise has its power back
    structure = {name: band_passed_kurtosis(x, center, radius).mean(axis=0)
                 for name, x in (("real", high.numpy()), ("noise", noisy.numpy()))}
    assert (structure["real"] > structure["noise"] + 1).all(), structure  # but not its sparse loops and kernels


def test_no_jpeg_block_peak_shows_in_the_radial_spectrum_at_256_px(shared_data, tmp_path):
    """The 472 px browse composites are JPEGs (8 px blocks: 59 cycles per image); cropped to the
    2.3 R_sun field and resampled to 256 px, neither a composite nor the same composite
    recompressed at JPEG quality 5 shows a block peak in the radially averaged disk spectrum."""
    from PIL import Image

    from solar_diffusion.dataset_builder.images import crop_and_resize, read_frame

    source = shared_data / "sdo_browse_2012" / "images" / FRAMES[0]
    if not source.exists():
        pytest.skip(f"{source} is not in the shared data")
    recompressed = tmp_path / source.name
    Image.open(source).save(recompressed, quality=5)
    peaks = []
    for path in (source, recompressed):
        image, radius = crop_and_resize(read_frame(path, channels=("171", "131", "94")), 256, limb_mask=None)
        x = torch.from_numpy(np.asarray(image)[None]).float() / 127.5 - 1
        peaks.append(block_peak(disk_power_spectrum(x.numpy(), (127.5, 127.5), radius)))
    assert all(((0.8 < p) & (p < 1.25)).all() for p in peaks), peaks
