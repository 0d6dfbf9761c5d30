"""Pipelines: opening images, tiling, running the science on Dask, the CLI.

The only package that imports Dask.  The main entry point is
:func:`detect_image`.
"""

from .config import DetectionConfig, load_config
from .detect import DetectionResult, detect_image
from .io import Exposure, open_exposure

__all__ = ["DetectionConfig", "DetectionResult", "Exposure", "detect_image", "load_config", "open_exposure"]
