"""astropy units at the normalisation's boundary."""

from __future__ import annotations

import astropy.units as u
import numpy as np

from solar_diffusion.pipelines import ClipLogNormalization

#: 8-bit display-scaled brightness of SDO browse images: not a physical unit.
BROWSE = u.def_unit("browse", doc="8-bit display-scaled brightness of SDO browse images")
DN_PER_S = u.DN / u.s


def data_unit(normalization: ClipLogNormalization) -> u.UnitBase:
    """The astropy unit of a normalisation's data unit.

    >>> data_unit(ClipLogNormalization())
    Unit("DN / s")
    """
    if normalization.unit == "browse":
        return BROWSE
    return u.Unit(normalization.unit, parse_strict="raise")


def to_model_space(data: u.Quantity, normalization: ClipLogNormalization) -> np.ndarray:
    """Normalise a Quantity (converted to the normalisation's unit first) to model space.

    >>> to_model_space([3.5] * u.DN / u.ms, ClipLogNormalization())
    array([1.])
    """
    unit = data_unit(normalization)
    if not isinstance(data, u.Quantity):
        raise TypeError(f"expected an astropy Quantity in {unit}, got {type(data).__name__}")
    try:
        values = data.to_value(unit)
    except u.UnitConversionError as err:
        raise u.UnitConversionError(f"the model's data are in {unit}, got {data.unit}: {err}") from None
    return normalization.forward(np.asarray(values))


def to_quantity(model_values, normalization: ClipLogNormalization) -> u.Quantity:
    """Model-space values -> a Quantity in the data unit (the inverse normalisation).

    >>> to_quantity([1.0], ClipLogNormalization())
    <Quantity [3500.] DN / s>
    """
    return u.Quantity(normalization.inverse(np.asarray(model_values, dtype=np.float64)), data_unit(normalization))
