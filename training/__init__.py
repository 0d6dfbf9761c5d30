"""Training and recalibration of the shipped models: simulate -> detect -> fit -> model card.

* :mod:`training.learned` - the learned expert's CNN (``moe-imaging train learned``);
* :mod:`training.gate` - the survey gate and its calibration split (``moe-imaging train gate``);
* :mod:`training.nucleus_triage` - the microscopy triage (``moe-imaging train nucleus-triage``);
* :mod:`training.recalibrate` - reviewers' labels into a head's weights (``moe-imaging calibrate``);
* :mod:`training.progress` - the one progress style (lines to a ``log`` callable).

The models themselves are pure objects of :mod:`moe_imaging`; weights files are
read and written by :mod:`pipelines.models`.
"""

__all__: list[str] = []
