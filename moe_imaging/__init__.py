"""moe-imaging: the science of the pipeline.

Pure functions on arrays: PSF models and priors, background and noise, the
detector experts, and the survey simulator.  Nothing here opens files, imports
Dask or Prefect; see ``pipelines`` for that.
"""

__all__ = ["__version__"]

from contracts import __version__
