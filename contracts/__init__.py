"""The shared contracts of moe-imaging: what every package may import, and nothing else.

* :mod:`contracts.errors` - the expected faults (printed as one line, never a traceback);
* :mod:`contracts.config` - the frozen, validated :class:`~contracts.config.Config` base and its checks;
* :mod:`contracts.flags` - the one registry of pixel mask bits and detection flags;
* :mod:`contracts.vocabulary` - kinds, sub-types, decisions, modes, expert names, label columns;
* :mod:`contracts.files` - the one atomic file write.

Nothing here imports the science core, torch, Dask, Prefect or a database: the
catalogs and the review queue depend on these contracts alone.
"""

__version__ = "0.1.0"
"""The version of the moe-imaging distribution (every package reports this one)."""

from .config import Config, check_choice, check_int, check_range
from .errors import ConfigError, InputError, MoeImagingError, PSFError
from .files import atomic_write, atomic_write_bytes, atomic_write_text
from .flags import MaskBit, SourceFlag
from .vocabulary import (
    CLASSES_BY_MODE,
    DECISIONS,
    EXPERT_NAMES,
    KINDS,
    LABEL_COLUMNS,
    LABEL_VALUES,
    MICROSCOPY_CLASSES,
    MODES,
    SURVEY_CLASSES,
    SURVEY_EXPERTS,
)

__all__ = [
    "__version__",
    "Config", "check_choice", "check_int", "check_range",
    "ConfigError", "InputError", "MoeImagingError", "PSFError",
    "atomic_write", "atomic_write_bytes", "atomic_write_text",
    "MaskBit", "SourceFlag",
    "CLASSES_BY_MODE", "DECISIONS", "EXPERT_NAMES", "KINDS", "LABEL_COLUMNS", "LABEL_VALUES",
    "MICROSCOPY_CLASSES", "MODES", "SURVEY_CLASSES", "SURVEY_EXPERTS",
]
