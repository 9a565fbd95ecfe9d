"""The packages of the build: the four of the ``solar_diffusion`` namespace (pyproject.toml maps
their folders), and the data folders beside them that Python could import (the bundled models'
and the accelerate configs'): listed when this checkout holds them, so that the build prints no
warning, and left out where a copy holds none (the offline GPU node's checkout has no models)."""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
NAMESPACE = {"solar_diffusion": "solar_diffusion", "solar_diffusion.pipelines": "pipelines",
             "solar_diffusion.dataset_builder": "dataset_builder", "solar_diffusion.training": "training"}
DATA_FILES = ["*.json", "*.safetensors", "*.md", "*.yaml"]


def data_packages() -> list[str]:
    """Every folder below the namespace's folders whose path is a Python name: a package of data."""
    found = []
    for package, folder in NAMESPACE.items():
        for path in sorted((ROOT / folder).rglob("*")):
            parts = path.relative_to(ROOT / folder).parts
            if path.is_dir() and all(p.isidentifier() for p in parts) and "__pycache__" not in parts:
                found.append(".".join([package, *parts]))
    return found


setup(packages=[*NAMESPACE, *data_packages()],
      package_data={"solar_diffusion": ["models/**/*.json", "models/**/*.safetensors", "models/**/*.md",
                                        "aia_colormaps.npz"],
                    **{package: DATA_FILES for package in data_packages()}})
