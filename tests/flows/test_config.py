"""The run configuration: one TOML file into frozen objects; errors name the file and the key.

No Prefect and no Dask here: these are fast.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from contracts.errors import ConfigError
from flows.batch import discover_inputs, exposure_name
from flows.cli import prefect_environment
from flows.config import (
    FLOW_DETECTION_DEFAULTS,
    InputsConfig,
    RunConfig,
    load_run_config,
    validate_cron,
)
from flows.dask import DASK_ADDRESS_ENV, scheduler_address
from flows.errors import FlowError
from flows.state import DoneRecord, Ledger
from moe_cli import main

FULL = """
[inputs]
glob = "raw/*.fits"
mode = "survey"

[outputs]
folder = "out"
run = "nightly"

[detection]
experts = ["point", "artifact"]
[detection.gate]
enabled = true
alpha = 0.02
[detection.tiling]
tile_size = 1024

[review]
url = "postgresql+psycopg://moe:secret@db.example.org/review"
enqueue = true

[dask]
address = "tcp://scheduler:8786"
threads_per_worker = 2

[flow]
max_concurrent = 3
retries = 1
retry_delay = 2.5

[[schedules]]
name = "nightly"
cron = "0 7 * * *"
timezone = "Europe/Paris"

[[schedules]]
name = "plates"
cron = "@hourly"
run = "plates"
inputs = { glob = "plates/*/*.ome.tif", mode = "microscopy" }
"""


def _write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_full_file_is_validated_into_frozen_objects(tmp_path) -> None:
    config = load_run_config(_write(tmp_path, FULL))
    assert config.inputs.glob == str(tmp_path / "raw/*.fits")  # relative to the file's folder
    assert config.outputs.folder == str(tmp_path / "out") and config.outputs.run == "nightly"
    assert config.detection.experts == ("point", "artifact")
    assert config.detection.gate.enabled and config.detection.gate.alpha == 0.02
    assert config.detection.tiling.tile_size == 1024
    assert config.dask.address == "tcp://scheduler:8786" and config.dask.threads_per_worker == 2
    assert (config.flow.max_concurrent, config.flow.retries, config.flow.retry_delay) == (3, 1, 2.5)
    nightly, plates = config.schedules
    assert (nightly.cron, nightly.timezone) == ("0 7 * * *", "Europe/Paris")
    assert plates.cron == "0 * * * *" and plates.inputs.mode == "microscopy"
    assert plates.inputs.glob == str(tmp_path / "plates/*/*.ome.tif")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.flow.retries = 5  # type: ignore[misc]
    # the schedule's inputs and run name replace the file's
    sub = config.for_schedule(plates)
    assert sub.inputs.mode == "microscopy" and sub.outputs.run == "plates" and sub.schedules == ()
    # the review URL's password never shows
    from flows.batch import safe_url

    assert "secret" not in safe_url(config.review_url)


def test_mapping_round_trip_is_json(tmp_path) -> None:
    config = load_run_config(_write(tmp_path, FULL))
    mapping = json.loads(json.dumps(config.to_mapping()))
    assert RunConfig.from_file_mapping(mapping) == config
    # a value only JSON can say (None: one tile) survives too
    one_tile = config.replace(detection=config.detection.replace(tiling=config.detection.tiling.replace(tile_size=None)))
    assert RunConfig.from_file_mapping(json.loads(json.dumps(one_tile.to_mapping()))) == one_tile


def test_defaults_run_every_expert_and_the_gate() -> None:
    config = RunConfig()
    assert list(config.detection.experts) == FLOW_DETECTION_DEFAULTS["experts"]
    assert config.detection.gate.enabled
    assert config.review.enqueue and config.review.url is None
    assert config.review_url.endswith("_review.sqlite")
    # a [detection] section is applied on top of the flow defaults
    partial = RunConfig.from_file_mapping({"detection": {"gate": {"alpha": 0.05}}})
    assert partial.detection.gate.enabled and partial.detection.gate.alpha == 0.05
    assert partial.detection.experts == config.detection.experts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[dask]\nadress = 'tcp://x:8786'\n", "run.toml: [dask] unknown key 'adress'"),
        ("[inptus]\nglob = '*.fits'\n", "run.toml: unknown section [inptus]"),
        ("[flow]\nmax_concurent = 2\n", "run.toml: [flow] unknown key 'max_concurent'"),
        ("[flow]\nretries = -1\n", "run.toml: flow.retries: must be >= 0"),
        ("[flow]\nmax_concurrent = 1.5\n", "run.toml: flow.max_concurrent: expected an integer"),
        ("[dask]\nn_workers = 0\n", "run.toml: dask.n_workers: must be >= 1"),
        ("[review]\nenqueue = 'yes'\n", "run.toml: review.enqueue: expected true or false"),
        ("[outputs]\nrun = 'a/b'\n", "run.toml: outputs.run:"),
        ("[inputs]\nglob = 'a'\nmanifest = 'b'\n", "run.toml: inputs: give glob or manifest, not both"),
        ("[inputs]\nmode = 'radio'\n", "run.toml: inputs.mode: must be one of"),
        ("[detection.psf]\nfwm = 3.0\n", "run.toml: [detection.psf] unknown option(s) ['fwm']"),
        ("[detection.psf]\nfwhm = -1.0\n", "run.toml: [detection] psf.fwhm: must be >= 0.3"),
        ("[detection]\nexperts = ['point', 'psychic']\n", "run.toml: [detection] experts:"),
        ("[[schedules]]\nname = 'n'\ncron = '61 * * * *'\n", "run.toml: schedules[n].cron: '61 * * * *': minute 61"),
        ("[[schedules]]\nname = 'n'\ncron = '0 7 * *'\n", "is not a cron expression"),
        ("[[schedules]]\nname = 'n'\n", "run.toml: [[schedules]] #1: 'cron' is required"),
        ("[[schedules]]\nname = 'n'\ncron = '@daily'\ntimezone = 'Mars/Olympus'\n", "unknown time zone 'Mars/Olympus'"),
        ("[[schedules]]\nname = 'n'\ncron = '@daily'\nevery = 3\n", "[[schedules]] #1 unknown key 'every'"),
        ("[[schedules]]\nname = 'n'\ncron = '@daily'\n[[schedules]]\nname = 'n'\ncron = '@hourly'\n",
         "schedules: names must be unique"),
        ("[flow\n", "run.toml: not valid TOML"),
    ],
)
def test_invalid_files_name_the_key(tmp_path, text, message) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert message.replace("run.toml", str(path)) in text


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_run_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("expr", ["0 7 * * *", "*/15 0-6 1,15 jan-mar mon-fri", "@weekly", "5 4 * * sun"])
def test_cron_accepts(expr) -> None:
    assert len(validate_cron("c", expr).split()) == 5


@pytest.mark.parametrize("expr", ["0 24 * * *", "* * 0 * *", "*/0 * * * *", "5-1 * * * *", "x * * * *", ""])
def test_cron_rejects(expr) -> None:
    with pytest.raises(ConfigError, match="^c: "):
        validate_cron("c", expr)


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:
    bad = _write(tmp_path, "[dask]\nadress = 'tcp://x:8786'\n")
    assert main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"moe-imaging: error: {bad}: [dask] unknown key 'adress' (known: address, n_workers, "
                    f"threads_per_worker, processes, timeout)")]
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moe-imaging: error: moe-imaging run: no inputs") and "Traceback" not in err
    assert main(["run", "--input", "x/*.fits", "--workers", "0"]) == 2
    assert "--workers: must be >= 1" in capsys.readouterr().err
    assert main(["flows", "serve", "--config", str(_write(tmp_path, "[flow]\nretries = 1\n", "plain.toml")),
                 "--dry-run"]) == 2
    assert "no [[schedules]] to serve" in capsys.readouterr().err


def test_serve_dry_run_lists_the_schedules(tmp_path, capsys) -> None:
    path = _write(tmp_path, FULL)
    assert main(["flows", "serve", "--config", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("survey-batch/nightly: cron '0 7 * * *' (Europe/Paris)")
    assert out[1].startswith("microscopy-batch/plates: cron '0 * * * *' (UTC)") and "run=plates" in out[1]


def test_dask_address_from_config_then_environment(monkeypatch) -> None:
    from flows.config import DaskConfig

    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    assert scheduler_address(DaskConfig()) is None
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://10.0.0.1:8786")
    assert scheduler_address(DaskConfig()) == "tcp://10.0.0.1:8786"
    assert scheduler_address(DaskConfig(address="tcp://other:8786")) == "tcp://other:8786"


def test_unreachable_scheduler_is_a_flow_error() -> None:
    from flows.config import DaskConfig
    from flows.dask import dask_client
    from tests.flows.helpers import free_port

    with pytest.raises(FlowError, match=r"^dask scheduler tcp://127.0.0.1:\d+: cannot connect"):
        with dask_client(DaskConfig(address=f"tcp://127.0.0.1:{free_port()}"), timeout=2):
            pass


def test_prefect_environment_defaults_are_project_local(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    env: dict[str, str] = {}
    changed = prefect_environment(environ=env)
    assert env["PREFECT_HOME"] == str(tmp_path / ".moe-imaging" / "prefect")
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert float(env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 60
    assert env["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] == "WARNING" and set(changed) == set(env)
    # a configured server or home wins
    env = {"PREFECT_API_URL": "http://prefect:4200/api"}
    prefect_environment(environ=env, verbose=True)
    assert "PREFECT_HOME" not in env and "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL" not in env


def test_discovery_glob_and_manifests(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/x.fits", "a/y.fits.fz", "a/z.ome.tif", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"")
    items = discover_inputs(InputsConfig(glob=str(tmp_path / "a" / "*.fits*")))
    assert [i.exposure for i in items] == ["x", "y"]
    assert all(Path(i.path).is_absolute() for i in items) and items[0].plate == "a"
    (tmp_path / "list.txt").write_text("# tonight\na/x.fits\n\n" + str(tmp_path / "a/z.ome.tif") + "  # plate 1\n")
    items = discover_inputs(InputsConfig(manifest=str(tmp_path / "list.txt")))
    assert [i.exposure for i in items] == ["x", "z"]
    (tmp_path / "plates.csv").write_text("path,plate,well\na/z.ome.tif,P1,A01\nmissing.tif,P1,A02\n")
    items = discover_inputs(InputsConfig(manifest=str(tmp_path / "plates.csv")))
    assert [(i.exposure, i.plate, i.well) for i in items] == [("z", "P1", "A01"), ("missing", "P1", "A02")]
    (tmp_path / "bad.csv").write_text("file,plate\nx,1\n")
    with pytest.raises(FlowError, match="needs a 'path' column"):
        discover_inputs(InputsConfig(manifest=str(tmp_path / "bad.csv")))
    with pytest.raises(FlowError, match="manifest not found"):
        discover_inputs(InputsConfig(manifest=str(tmp_path / "none.txt")))
    assert discover_inputs(InputsConfig(glob=str(tmp_path / "empty" / "*.fits"))) == []
    assert exposure_name("/d/obs 1.fits.gz") == "obs_1"


def test_ledger_skips_only_what_is_still_there(tmp_path) -> None:
    ledger = Ledger(tmp_path)
    catalog = tmp_path / "c.parquet"
    catalog.write_bytes(b"x")
    record = DoneRecord(run="r", input_checksum="a" * 64, config_hash="h", exposure="e", input_path="/e.fits",
                        catalog=str(catalog), n_rows=3, n_review=1, flow_run="f", finished_at="t")
    assert ledger.done("r", "a" * 64, "h") is None
    ledger.record_failure("r", "/e.fits", "a" * 64, "h", "boom", "f0")
    assert [f["reason"] for f in ledger.failures("r")] == ["boom"]
    ledger.record_done(record)
    assert ledger.done("r", "a" * 64, "h") == record
    assert ledger.failures("r") == []  # success clears the failure
    assert ledger.done("r", "a" * 64, "other") is None and ledger.done("other", "a" * 64, "h") is None
    assert Ledger(tmp_path).records("r") == [record]  # persistent
    catalog.unlink()
    assert ledger.done("r", "a" * 64, "h") is None  # a deleted catalog is made again
