"""Tests of contracts.config (frozen validated configurations) and contracts.flags."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contracts.config import Config, check_choice, check_range
from contracts.errors import ConfigError, MoeImagingError
from contracts.flags import (
    FLAG_DESCRIPTIONS,
    MASK_DESCRIPTIONS,
    MaskBit,
    SourceFlag,
    decode,
    describe,
)
from moe_imaging.background import BackgroundConfig
from moe_imaging.experts.point import PointExpertConfig

REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class _StageConfig(Config):
    """A parent configuration with nested stage configurations (as a pipeline has)."""

    name: str = "stage"
    seed: int = 1
    scales: tuple[float, ...] = (1.0, 2.0)
    background: BackgroundConfig = BackgroundConfig()
    point: PointExpertConfig = PointExpertConfig()
    optional_point: PointExpertConfig | None = None

    def __post_init__(self) -> None:
        check_range("stage.seed", self.seed, low=0)


# --------------------------------------------------------------------------- check helpers


@pytest.mark.parametrize(
    "value,kwargs,message",
    [
        (None, {}, "a value is required"),
        (True, {}, "expected a number"),
        ("3", {}, "expected a number"),
        (float("nan"), {}, "NaN"),
        (0.0, dict(low=0.0, low_inclusive=False), "must be > 0.0"),
        (-1, dict(low=0), "must be >= 0"),
        (11, dict(high=10), "must be <= 10"),
    ],
)
def test_check_range_rejects(value, kwargs, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        check_range("stage.x", value, **kwargs)
    assert str(info.value).startswith("stage.x:")
    assert isinstance(info.value, MoeImagingError)


@pytest.mark.parametrize(
    "value,kwargs",
    [(None, dict(allow_none=True)), (0.0, dict(low=0.0)), (10, dict(high=10)), (5, dict(low=1, high=9)), (np.float64(1.5), {})],
)
def test_check_range_accepts(value, kwargs) -> None:
    check_range("stage.x", value, **kwargs)


def test_check_choice() -> None:
    check_choice("stage.mode", "a", ("a", "b"))
    with pytest.raises(ConfigError, match=r"stage.mode: must be one of \['a', 'b'\], got 'c'"):
        check_choice("stage.mode", "c", ("a", "b"))


# --------------------------------------------------------------------------- from_mapping


def test_from_mapping_empty_gives_defaults() -> None:
    assert BackgroundConfig.from_mapping({}) == BackgroundConfig()
    assert BackgroundConfig.from_mapping(None) == BackgroundConfig()
    assert _StageConfig.from_mapping({}) == _StageConfig()


def test_from_mapping_sets_values() -> None:
    cfg = BackgroundConfig.from_mapping({"mesh_size": 32, "estimator": "median"})
    assert cfg.mesh_size == 32 and cfg.estimator == "median" and cfg.filter_size == 3


def test_from_mapping_rejects_unknown_keys_naming_them() -> None:
    with pytest.raises(ConfigError) as info:
        BackgroundConfig.from_mapping({"mesh_size": 32, "mesh_szie": 64, "filtersize": 5})
    msg = str(info.value)
    assert "'filtersize'" in msg and "'mesh_szie'" in msg
    assert "BackgroundConfig" in msg
    assert "mesh_size" in msg  # the known options are listed


def test_from_mapping_validates_values() -> None:
    with pytest.raises(ConfigError, match="background.mesh_size"):
        BackgroundConfig.from_mapping({"mesh_size": 4})
    with pytest.raises(ConfigError, match="point.deblend_contrast"):
        PointExpertConfig.from_mapping({"deblend_contrast": 2.0})


def test_nested_configs_are_built_from_nested_mappings() -> None:
    cfg = _StageConfig.from_mapping(
        {
            "seed": 7,
            "scales": [0.5, 1.5, 3.0],
            "background": {"mesh_size": 128, "filter_size": 5},
            "point": {"threshold": 6.0},
            "optional_point": {"blend_radius_fwhm": 1.0},
        }
    )
    assert isinstance(cfg.background, BackgroundConfig)
    assert cfg.background.mesh_size == 128 and cfg.background.filter_size == 5
    assert cfg.background.sigma == BackgroundConfig().sigma
    assert isinstance(cfg.point, PointExpertConfig) and cfg.point.threshold == 6.0
    assert isinstance(cfg.optional_point, PointExpertConfig)  # through an Optional hint
    assert cfg.optional_point.blend_radius_fwhm == 1.0
    assert cfg.scales == (0.5, 1.5, 3.0)  # lists become tuples (hashable, frozen)
    assert cfg.seed == 7


def test_nested_unknown_key_names_its_section() -> None:
    with pytest.raises(ConfigError) as info:
        _StageConfig.from_mapping({"background": {"mesh": 64}})
    msg = str(info.value)
    assert "[background]" in msg and "'mesh'" in msg and "BackgroundConfig" in msg
    with pytest.raises(ConfigError, match=r"\[point\]"):
        _StageConfig.from_mapping({"point": {"treshold": 5.0}})


def test_nested_invalid_value_raises() -> None:
    with pytest.raises(ConfigError, match="background.filter_size"):
        _StageConfig.from_mapping({"background": {"filter_size": 2}})
    with pytest.raises(ConfigError, match="stage.seed"):
        _StageConfig.from_mapping({"seed": -1})


def test_configs_are_frozen_and_replace_revalidates() -> None:
    cfg = BackgroundConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mesh_size = 32  # type: ignore[misc]
    assert cfg.replace(mesh_size=32).mesh_size == 32
    assert cfg.mesh_size == 64
    with pytest.raises(ConfigError):
        cfg.replace(mesh_size=2)


def test_to_dict_round_trips_through_from_mapping() -> None:
    cfg = _StageConfig.from_mapping({"background": {"mesh_size": 96}, "point": {"sharp_max": 3.0}})
    d = cfg.to_dict()
    assert d["background"]["mesh_size"] == 96 and isinstance(d["background"], dict)
    assert _StageConfig.from_mapping(d) == cfg


# --------------------------------------------------------------------------- config_hash


def test_config_hash_is_short_hex_and_equal_for_equal_configs() -> None:
    a = _StageConfig.from_mapping({"background": {"mesh_size": 32}, "seed": 3})
    b = _StageConfig.from_mapping({"seed": 3, "background": {"mesh_size": 32}})  # other key order
    h = a.config_hash()
    assert len(h) == 16 and all(c in "0123456789abcdef" for c in h)
    assert h == b.config_hash()
    assert BackgroundConfig().config_hash() == BackgroundConfig().config_hash()


@pytest.mark.parametrize(
    "changes",
    [
        {"seed": 2},
        {"name": "other"},
        {"scales": [1.0, 2.5]},
        {"background": {"mesh_size": 65}},
        {"background": {"sigma": 3.0000001}},
        {"point": {"threshold": 5.0}},
        {"optional_point": {}},
    ],
)
def test_config_hash_changes_with_any_value(changes) -> None:
    assert _StageConfig.from_mapping(changes).config_hash() != _StageConfig().config_hash()


def test_config_hash_is_stable_across_processes() -> None:
    """The hash is provenance: the same configuration must hash the same in
    another interpreter (whatever PYTHONHASHSEED) as here."""
    code = (
        "from moe_imaging.background import BackgroundConfig\n"
        "from moe_imaging.experts.point import PointExpertConfig\n"
        "print(BackgroundConfig(mesh_size=48).config_hash(), PointExpertConfig().config_hash())\n"
    )
    here = f"{BackgroundConfig(mesh_size=48).config_hash()} {PointExpertConfig().config_hash()}"
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == here


# --------------------------------------------------------------------------- flags


@pytest.mark.parametrize("registry", [SourceFlag, MaskBit])
def test_every_bit_is_a_distinct_power_of_two_with_a_description(registry) -> None:
    values = [int(m.value) for m in registry]
    assert all(v > 0 and v & (v - 1) == 0 for v in values)
    assert len(set(values)) == len(values)
    table = describe(registry)
    assert list(table) == [m.name for m in registry]
    for member in registry:
        bit, text = table[member.name]
        assert bit == int(member.value)
        assert isinstance(text, str) and len(text) > 10
    descriptions = FLAG_DESCRIPTIONS if registry is SourceFlag else MASK_DESCRIPTIONS
    assert set(descriptions) == {m.name for m in registry}


def test_describe_defaults_to_source_flags() -> None:
    assert describe() == describe(SourceFlag)
    assert set(describe()) == {"EDGE", "SATURATED", "MASKED", "BLENDED", "TOO_SHARP"}
    assert set(describe(MaskBit)) == {"BAD", "NONFINITE", "SATURATED"}
    # the two registries share a name but not its meaning
    assert describe(MaskBit)["SATURATED"][1] != describe(SourceFlag)["SATURATED"][1]


@pytest.mark.parametrize("registry", [SourceFlag, MaskBit])
def test_decode_every_single_bit_and_every_combination(registry) -> None:
    members = list(registry)
    for m in members:
        assert decode(int(m.value), registry) == [m.name]
    for combo in range(1 << len(members)):
        value = sum(int(m.value) for i, m in enumerate(members) if combo >> i & 1)
        names = decode(value, registry)
        assert names == [m.name for i, m in enumerate(members) if combo >> i & 1]  # registry order


def test_decode_accepts_numpy_integers_and_flag_objects() -> None:
    assert decode(0) == []
    assert decode(np.int32(SourceFlag.EDGE | SourceFlag.BLENDED)) == ["EDGE", "BLENDED"]
    assert decode(np.int64(SourceFlag.TOO_SHARP)) == ["TOO_SHARP"]
    assert decode(SourceFlag.SATURATED | SourceFlag.MASKED) == ["SATURATED", "MASKED"]
    assert decode(np.uint16(MaskBit.NONFINITE | MaskBit.SATURATED), MaskBit) == ["NONFINITE", "SATURATED"]
    # a flags column value read back from a table
    column = np.array([0, 9, 16], dtype=np.int32)
    assert [decode(v) for v in column] == [[], ["EDGE", "BLENDED"], ["TOO_SHARP"]]


def test_decode_ignores_bits_outside_the_registry() -> None:
    assert decode(int(SourceFlag.EDGE) | (1 << 20)) == ["EDGE"]
    assert decode(8, MaskBit) == []
