"""Source ids: the peak pixel, unique even when two objects share it."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from pipelines.detect import _source_ids


def test_ids_are_the_peak_pixel_and_shared_peaks_get_distinct_ids() -> None:
    t = Table({"x_peak": [3, 3, 5, 3], "y_peak": [1, 1, 2, 1], "x": [3.2, 2.9, 5.0, 3.5], "y": [1.0, 1.0, 2.0, 1.1]})
    ids = _source_ids(t, 10, 10)
    assert ids.tolist() == [113, 13, 25, 213]  # 13 = 1 * 10 + 3, then + 100 per extra object on that pixel
    # the order of the rows (e.g. another tiling) does not change any object's id
    perm = [2, 3, 0, 1]
    assert _source_ids(t[perm], 10, 10).tolist() == ids[perm].tolist()
    assert len(np.unique(ids)) == len(ids)
