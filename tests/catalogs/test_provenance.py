"""Tests of catalogs.provenance."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from catalogs import (
    SCHEMA_VERSION,
    Provenance,
    config_hash,
    file_checksum,
    make_provenance,
)
from contracts.errors import InputError
from moe_imaging import __version__


def test_defaults():
    prov = Provenance()
    assert prov.package_version == __version__
    assert prov.schema_version == SCHEMA_VERSION
    assert prov.model_version == "none"
    assert prov.flux_unit == "adu"
    assert prov.created.endswith("+00:00")


def test_round_trip_dict_and_json(provenance):
    assert Provenance.from_dict(provenance.to_dict()) == provenance
    assert Provenance.from_json(provenance.to_json()) == provenance
    assert Provenance.from_dict(json.loads(json.dumps(provenance.to_dict()))) == provenance
    data = provenance.to_dict()
    assert data["image_shape"] == [4000, 4096]
    assert data["psf"]["source"] == "header:FWHM"
    assert provenance.image_shape == (4000, 4096)


def test_is_frozen(provenance):
    with pytest.raises(dataclasses.FrozenInstanceError):
        provenance.flux_unit = "electron"  # type: ignore[misc]


def test_unknown_keys_are_kept():
    data = Provenance().to_dict() | {"future_field": {"a": 1}}
    prov = Provenance.from_dict(data)
    assert prov.extra == {"future_field": {"a": 1}}
    assert prov.to_dict()["future_field"] == {"a": 1}


def test_normalises_values():
    import numpy as np

    prov = Provenance(config={"t": (1, 2), "f": np.float32(0.5), "nan": float("nan")},
                      threshold=np.float64(5), tile_size=np.int64(512), runtime_s=float("nan"))
    assert prov.config == {"t": [1, 2], "f": 0.5, "nan": None}
    assert prov.threshold == 5.0 and isinstance(prov.threshold, float)
    assert prov.tile_size == 512 and type(prov.tile_size) is int
    assert prov.runtime_s is None
    json.dumps(prov.to_dict(), allow_nan=False)


def test_bad_checksum_rejected():
    with pytest.raises(ValueError, match="input_checksum"):
        Provenance(input_checksum="xyz")


def test_file_checksum(tmp_path):
    data = bytes(range(256)) * 10_000  # > 1 MiB, several chunks
    path = tmp_path / "image.fits"
    path.write_bytes(data)
    assert file_checksum(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(InputError, match="not found"):
        file_checksum(tmp_path / "missing.fits")


def test_make_provenance(tmp_path):
    path = tmp_path / "image.fits"
    path.write_bytes(b"hello")
    prov = make_provenance(input_path=path, config={"b": 1, "a": 2}, psf={"fwhm_px": 2.5},
                           flux_unit="electron/s", image_shape=(10, 20), threshold=5)
    assert prov.input_checksum == hashlib.sha256(b"hello").hexdigest()
    assert prov.config_hash == config_hash({"a": 2, "b": 1})
    assert len(prov.config_hash) == 16
    assert prov.flux_unit == "electron/s"
    assert prov.input_path == str(path)


def test_config_hash_uses_config_objects():
    from contracts.config import Config

    @dataclasses.dataclass(frozen=True)
    class Small(Config):
        threshold: float = 5.0

    cfg = Small()
    assert config_hash(cfg) == cfg.config_hash() == config_hash(cfg.to_dict())
    assert make_provenance(config=cfg).config == {"threshold": 5.0}
