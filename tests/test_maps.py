import astropy.units as u
import numpy as np
import pytest
import sunpy.map
import torch
from astropy.coordinates import SkyCoord

from solar_diffusion.maps import synthetic_map, write_fits
from solar_diffusion.pipelines import rsun_px


def test_fits_from_pipeline_output_opens_as_a_synthetic_aia_map(tiny_pipeline, tmp_path):
    out = tiny_pipeline(["X"], generator=[torch.Generator().manual_seed(7)], num_inference_steps=2,
                        output_type="data_unit")
    path = write_fits(tmp_path / "x.fits", out.images[0], out.metadata[0], model="tiny-test")
    aia = sunpy.map.Map(path)
    assert aia.wavelength == 171 * u.AA
    assert aia.unit == u.DN / u.s
    assert aia.meta["synthetc"] is True and aia.meta["origin"] == "solar-diffusion"
    assert aia.meta["flarecls"] == "X" and aia.meta["genseed"] == 7 and aia.meta["genmodel"] == "tiny-test"
    np.testing.assert_allclose(aia.data, out.images[0, 0])
    assert aia.name.startswith("AIA 171.0 Angstrom") and aia.meta["creator"].startswith("solar-diffusion ")
    assert aia.meta["object"] == "synthetic full-disk Sun" and getattr(aia.plot_settings["cmap"], "name", aia.plot_settings["cmap"]) == "sdoaia171"
    from astropy.io import fits

    with fits.open(path, checksum=True) as hdul:  # astropy verifies CHECKSUM and DATASUM on open
        header = hdul[0].header
        assert header["CHECKSUM"] and header["DATASUM"] and header["DATE"].startswith("20")
    corrupt = tmp_path / "corrupt.fits"
    raw = bytearray(path.read_bytes())
    raw[-4] ^= 0xFF  # one flipped byte in the data
    corrupt.write_bytes(bytes(raw))
    with pytest.warns(Warning, match="verification failed"), fits.open(corrupt, checksum=True) as hdul:
        hdul[0].data.sum()

    geometry = out.metadata[0]["geometry"]
    # The disk centre of the config is where the WCS puts Sun centre.
    centre = aia.wcs.world_to_pixel(SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=aia.coordinate_frame))
    np.testing.assert_allclose(centre, geometry["disk_center_px"], atol=1e-6)
    # And the solar radius of the config in pixels is the WCS's.
    assert (aia.rsun_obs / aia.scale.axis1).to_value(u.pix) == pytest.approx(rsun_px(geometry), rel=1e-6)
    limb = SkyCoord(aia.rsun_obs, 0 * u.arcsec, frame=aia.coordinate_frame)
    x, _ = aia.wcs.world_to_pixel(limb)
    assert x - geometry["disk_center_px"][0] == pytest.approx(rsun_px(geometry), rel=1e-3)


def test_map_scales_the_wcs_to_a_resized_image(tiny_pipeline):
    out = tiny_pipeline("C", num_inference_steps=1, output_type="data_unit")
    big = np.kron(out.images[0, 0], np.ones((2, 2), dtype=np.float32))
    aia = synthetic_map(big, out.metadata[0])
    assert (aia.rsun_obs / aia.scale.axis1).to_value(u.pix) == pytest.approx(2 * rsun_px(out.metadata[0]["geometry"]))


def test_model_space_images_are_refused(tiny_pipeline):
    out = tiny_pipeline("C", num_inference_steps=1, output_type="model")
    with pytest.raises(ValueError, match="output_type='data_unit'"):
        synthetic_map(out.images[0].numpy(), out.metadata[0])


def test_generated_files_name_their_model_without_a_machine_path(tiny_pipeline, tmp_path):
    out = tiny_pipeline("C", num_inference_steps=1, output_type="data_unit")
    folder = tmp_path / "runs" / "flare-64" / "pipeline"
    folder.mkdir(parents=True)
    aia = sunpy.map.Map(write_fits(tmp_path / "c.fits", out.images[0], out.metadata[0], model=str(folder)))
    assert aia.meta["genmodel"] == "flare-64/pipeline" and str(tmp_path) not in str(aia.meta)
    hub = synthetic_map(out.images[0], out.metadata[0], model="solar/flares-64")
    assert hub.meta["genmodel"] == "solar/flares-64"


def test_browse_brightness_plots_with_a_linear_stretch(make_pipeline):
    from astropy.visualization import LinearStretch

    from solar_diffusion.pipelines import ClipLogNormalization

    pipe = make_pipeline(normalization=ClipLogNormalization.for_unit("browse"))
    out = pipe("C", num_inference_steps=1, output_type="data_unit")
    smap = synthetic_map(out.images[0], out.metadata[0])
    assert isinstance(smap.plot_settings["norm"].stretch, LinearStretch) and smap.plot_settings["norm"].vmax == 255


def test_sunpy_plots_and_transforms_every_fits_file_generate_writes(saved_conditioned_model, tmp_path):
    """What a physicist does first with a FITS file: plot it, draw the limb and the grid, cut a
    submap, rotate it, reproject it; every file ``generate`` writes, with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from solar_diffusion.cli import main

    model = saved_conditioned_model(tmp_path / "model", "flare")
    out = tmp_path / "out"
    assert main(["generate", "--model", str(model), "--flare-class", "M", "--flare-class", "quiet", "--num-images", "1",
                 "--steps", "1", "--format", "fits", "--out", str(out)]) == 0
    files = sorted(out.glob("*.fits"))
    assert len(files) == 6  # two images, three channels each
    for path in files:
        smap = sunpy.map.Map(path)
        assert smap.meta["synthetc"] is True
        fig = plt.figure()
        ax = fig.add_subplot(projection=smap)
        smap.plot(axes=ax)
        smap.draw_limb(axes=ax)
        smap.draw_grid(axes=ax)
        fig.canvas.draw()
        plt.close(fig)
        corner = SkyCoord(-500 * u.arcsec, -500 * u.arcsec, frame=smap.coordinate_frame)
        assert smap.submap(corner, top_right=SkyCoord(500 * u.arcsec, 500 * u.arcsec,
                                                      frame=smap.coordinate_frame)).data.size > 0
        assert smap.rotate(angle=10 * u.deg).data.shape[0] >= smap.data.shape[0]
    reprojected = smap.reproject_to(smap.wcs)
    assert np.nanmax(np.abs(reprojected.data - smap.data)) < 1e-3 * np.nanmax(np.abs(smap.data))


def test_a_flare_asked_at_a_noaa_location_on_a_date_lands_there_through_the_files_wcs(saved_conditioned_model,
                                                                                      tmp_path):
    """``--date`` sets the header's date, observer and plate scale, and the position conversion uses
    the same date: S15W01 on 2017-09-06 (B0 +7.2 deg, the Sun 952 arcsec across its radius) is
    found at S15W01 through the written file's WCS, and the limb sunpy draws is the model's disk."""
    import json

    from sunpy.coordinates import HeliographicStonyhurst

    from solar_diffusion.cli import main

    model = saved_conditioned_model(tmp_path / "model", "flare")
    for date in ("2017-09-06", "2012-01-04"):
        out = tmp_path / date
        assert main(["generate", "--model", str(model), "--flare-class", "X", "--flare-position", "S15W01", "--date",
                     date, "--num-images", "1", "--steps", "1", "--format", "fits", "--out", str(out)]) == 0
        record = json.loads((out / "generation.json").read_text())["images"][0]
        smap = sunpy.map.Map(out / record["files"][0])
        assert smap.date.isot.startswith(date) and smap.meta["date-obs"].startswith(date)
        x, y = record["flares"][0]["position_px"]
        where = smap.wcs.pixel_to_world(x, y).transform_to(HeliographicStonyhurst(obstime=smap.date))
        assert abs(where.lat.to_value(u.deg) + 15) < 1 and abs(where.lon.to_value(u.deg) - 1) < 1, (date, where)
        # the limb sunpy draws (the date's angular radius over the plate scale) is the model's disk
        limb_px = (smap.rsun_obs / smap.scale.axis1).to_value(u.pix)
        assert limb_px == pytest.approx(rsun_px(record["geometry"]), abs=0.5)


def test_a_forecast_models_image_says_its_flare_is_still_to_come(tiny_pipeline, tmp_path):
    out = tiny_pipeline(["M"], generator=[torch.Generator().manual_seed(7)], num_inference_steps=2,
                        output_type="data_unit")
    assert "fcsthrs" not in synthetic_map(out.images[0], out.metadata[0]).meta
    metadata = dict(out.metadata[0], forecast={"horizon_hours": 24.0, "label_rule": "..."})
    aia = sunpy.map.Map(write_fits(tmp_path / "m.fits", out.images[0], metadata))
    assert aia.meta["fcsthrs"] == 24.0 and aia.meta["flarecls"] == "M"
