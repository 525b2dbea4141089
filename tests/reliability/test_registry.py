"""The registry under races, kills and damaged files: no lost version, no silent switch."""

from __future__ import annotations

import json
import os

import pytest

from napari_medseg.core.checkpoints import file_sha256, save_checkpoint
from napari_medseg.core.errors import InputError, NotACheckpointError
from napari_medseg.core.registry import Registry


ARCH = {"name": "monai.UNet", "kwargs": {"spatial_dims": 2, "in_channels": 1, "out_channels": 2,
                                          "channels": [4, 8], "strides": [2]}}


def _state():
    from napari_medseg.core import nets

    return nets.build(ARCH).state_dict()


def test_two_writers_times_40_saves_give_80_versions_with_matching_sidecars(tmp_path):
    from napari_medseg.bench.reliability import concurrent_probe

    got = concurrent_probe(tmp_path, saves=40)
    assert got["concurrent_versions_found"] == got["concurrent_versions_expected"] == 80
    assert got["sidecar_mismatches"] == 0
    versions = [e.version for e in Registry().list("race")]
    assert sorted(versions) == list(range(1, 81))


def test_clean_spares_the_temp_file_of_a_save_that_began_after_its_scan_of_locks(tmp_path, monkeypatch):
    """Another writer reserves v0002 and starts writing its sidecar between clean()'s scan of
    the locks and its sweep of temp files (the interleaving that lost saves in the
    two-writer probe): its temp file is in progress, not debris."""
    from pathlib import Path

    reg = Registry()
    reg.save_new_version("m", _state(), arch=ARCH)
    folder = reg.user_root / "m"
    stale = folder / ".v0009.json.dead.tmp"  # a killed save's debris: no lock at all
    stale.write_text("{}")
    real_iterdir, calls = Path.iterdir, []

    def iterdir(self):
        if self == folder:
            calls.append(1)
            if len(calls) == 2:  # after the lock scan, before the temp sweep
                (folder / "v0002.lock").write_text(str(os.getpid()))
                (folder / ".v0002.json.abc123.tmp").write_text("{}")
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    done = reg.clean("m")
    assert (folder / ".v0002.json.abc123.tmp").exists()  # the running save keeps its temp file
    assert not stale.exists() and any(".v0009.json.dead.tmp" in d for d in done)  # debris still goes


def test_flipped_bytes_are_refused_by_their_checksum():
    reg = Registry()
    e = reg.save_new_version("m", _state(), arch=ARCH)
    raw = bytearray(e.path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    e.path.write_bytes(bytes(raw))
    with pytest.raises(NotACheckpointError, match="checksum does not match"):
        reg.get("m").load()


@pytest.mark.parametrize("arch, io, match", [
    ({"name": "monai.UNet", "kwargs": {"no_such_argument": 3}}, None, "cannot be built"),
    ("unet", None, "architecture entry"),
    ({"name": "no.Such"}, None, "Unknown network"),
    (ARCH, {"input": "hyperspectral", "stride": 8}, "not ones this version runs"),
    (ARCH, {"input": "gray", "stride": 0}, "io.stride"),
    (ARCH, {"input": "gray", "stride": 8, "margin": -1}, "io.margin"),
])
def test_bogus_metadata_is_one_clear_error(tmp_path, arch, io, match):
    p = tmp_path / "v0001.pt"
    save_checkpoint(p, _state(), method="m", arch=arch, extra={"io": io} if io else None)
    from napari_medseg.core.checkpoints import load_model

    with pytest.raises(NotACheckpointError, match=match) as err:
        load_model(p)
    assert "\n" not in str(err.value) and p.name in str(err.value)


def test_a_sidecar_that_is_not_an_object_does_not_break_info_or_list(run_cli):
    e = Registry().save_new_version("m", _state(), arch=ARCH)
    e.path.with_suffix(".json").write_text("[1, 2, 3]")
    code, out, err = run_cli("info")
    assert code == 0 and "damaged" in out and "Traceback" not in err
    code, out, _ = run_cli("models", "list", "m")
    assert code == 0 and "m v1 (user)" in out and "damaged" in out
    with pytest.raises(NotACheckpointError, match="damaged"):
        Registry().get("m").load()


def test_a_damaged_pointer_never_switches_versions_silently(run_cli):
    reg = Registry()
    reg.save_new_version("m", _state(), arch=ARCH)
    reg.save_new_version("m", _state(), arch=ARCH)
    reg.restore("m", 1)
    pointer = reg.user_root / "m" / "current.json"
    assert json.loads(pointer.read_text()) == {"version": 1, "source": "user"}
    pointer.write_text("{not json")
    with pytest.raises(InputError, match="damaged.*models restore m"):
        reg.get("m")
    pointer.write_text(json.dumps({"version": 7}))
    with pytest.raises(InputError, match="not there any more"):
        reg.get("m")
    code, out, err = run_cli("models", "list", "m")
    assert code == 0 and "m v2 (user)" in out and "(current)" not in out and "not there any more" in err


def test_restore_refuses_a_version_that_does_not_load():
    reg = Registry()
    reg.save_new_version("m", _state(), arch=ARCH)
    bad = reg.save_new_version("m", _state(), arch=ARCH)
    reg.restore("m", 1)
    bad.path.write_bytes(b"not a checkpoint")
    before = (reg.user_root / "m" / "current.json").read_text()
    with pytest.raises(InputError, match="cannot be made current"):
        reg.restore("m", 2)
    assert (reg.user_root / "m" / "current.json").read_text() == before


def test_debris_of_killed_saves_is_cleaned_or_completed():
    reg = Registry()
    e = reg.save_new_version("m", _state(), arch=ARCH)
    folder = e.path.parent
    # a save killed between weights and sidecar: the weights are listed again, with a sidecar
    e.path.with_suffix(".json").unlink()
    # a save killed while writing: a stale lock of a dead process and its temp file
    (folder / "v0002.lock").write_text("999999999")
    (folder / ".v0002.pt.abc123.tmp").write_bytes(b"half")
    done = reg.clean("m")
    assert not (folder / "v0002.lock").exists() and not (folder / ".v0002.pt.abc123.tmp").exists()
    side = json.loads(e.path.with_suffix(".json").read_text())
    assert side["sha256"] == file_sha256(e.path) and side["recovered_sidecar"] and len(done) == 3
    assert reg.save_new_version("m", _state(), arch=ARCH).version == 2


def test_a_live_save_is_not_disturbed_by_cleaning():
    reg = Registry()
    folder = reg.user_root / "m"
    folder.mkdir(parents=True)
    (folder / "v0001.lock").write_text(str(os.getpid()))
    (folder / ".v0001.pt.x.tmp").write_bytes(b"in progress")
    reg.clean("m")
    assert (folder / ".v0001.pt.x.tmp").exists()
    assert reg.save_new_version("m", _state(), arch=ARCH).version == 2  # v1 is reserved


def test_a_worse_version_is_kept_but_not_made_current_unless_asked():
    reg = Registry()
    val = {"validation": "synthetic seed 100"}
    good = reg.save_new_version("m", _state(), arch=ARCH, metrics={"dice": 0.994}, extra=val, monitor="dice")
    worse = reg.save_new_version("m", _state(), arch=ARCH, metrics={"dice": 0.41}, extra=val, monitor="dice")
    assert good.made_current and not worse.made_current
    assert "0.41" in worse.note and "0.994" in worse.note and "models restore m 2" in worse.note
    assert reg.current("m").version == 1
    other_set = reg.save_new_version("m", _state(), arch=ARCH, metrics={"dice": 0.3},
                                     extra={"validation": "user labels"}, monitor="dice")
    assert other_set.made_current  # not comparable: another validation set
    forced = reg.save_new_version("m", _state(), arch=ARCH, metrics={"dice": 0.1}, extra=val, monitor="dice",
                                  make_current=True)
    assert forced.made_current and reg.current("m").version == forced.version


def test_user_and_shipped_versions_of_one_number_are_told_apart(tmp_path):
    shipped = tmp_path / "shipped"
    save_checkpoint(shipped / "m" / "v0001.pt", _state(), method="m", arch=ARCH, version=1,
                    metrics={"tag": 1.0})
    reg = Registry(shipped_root=shipped, user_root=tmp_path / "user")
    (reg.user_root / "m").mkdir(parents=True)
    save_checkpoint(reg.user_root / "m" / "v0001.pt", _state(), method="m", arch=ARCH, version=1,
                    metrics={"tag": 2.0})
    reg.restore("m", 1, source="shipped")
    assert reg.current("m").source == "shipped" and reg.current("m").meta["metrics"]["tag"] == 1.0
    reg.restore("m", 1, source="user")
    assert reg.current("m").source == "user"
