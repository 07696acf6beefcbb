"""Checkpoint folders: pack/unpack round trips, refusing pickles and damaged files, crash safety, RNG."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import random
import shutil
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from save_kill import run_killed

import rlcore.checkpoint as ck
from rlcore.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    pack_state,
    restore_rng_state,
    save_checkpoint,
    unpack_state,
)

META = {"algo": "ppo", "config": {"lr": 3e-4, "hidden": [64, 64]}, "global_step": 1234}


def roundtrip(state):
    """pack -> JSON text -> unpack, as a checkpoint would store it."""
    tensors, skeleton = pack_state(state)
    skeleton = json.loads(json.dumps(skeleton, allow_nan=False))
    return unpack_state(tensors, skeleton)


def assert_same(a, b, path="state"):
    """Deep equality that also checks container, tensor and array types and dtypes."""
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a == b, path
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), path
        assert [type(key) for key in a] == [type(key) for key in b], path
        for key in a:
            assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}/{index}")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, path
        if isinstance(a, float):
            assert math.copysign(1.0, a) == math.copysign(1.0, b), path


def max_abs_int(node) -> int:
    if isinstance(node, dict):
        return max([max_abs_int(value) for value in node.values()], default=0)
    if isinstance(node, list):
        return max([max_abs_int(value) for value in node], default=0)
    return abs(node) if isinstance(node, int) else 0


def nested_state():
    return {
        "algo": {
            "step": 7,
            "ratio": 0.1,
            "flags": [True, False, None],
            "name": "ppo",
            "pair": (1, "two", 3.0),
            "nested_tuple": ((1, 2), [3, (4,)]),
            "int_keys": {0: "zero", 5: [1, 2], -3: {"x": 1}},
            "mixed_keys": {1: "one", "1": "string one"},
            "big": 2**200 + 12345,
            "negative_big": -(2**70),
            "limits": [2**53 - 1, 2**53, -(2**63), 2**64 - 1],
            "specials": [float("nan"), float("inf"), float("-inf"), -0.0, 1e-310],
            "empty": {"list": [], "dict": {}, "tuple": ()},
        },
        "arrays": {
            "f64": np.arange(6, dtype=np.float64).reshape(2, 3),
            "f32": np.linspace(0, 1, 5, dtype=np.float32),
            "f16": np.array([1.5, -2.25], dtype=np.float16),
            "i8": np.array([-128, 127], dtype=np.int8),
            "u16": np.array([0, 65535], dtype=np.uint16),
            "u64": np.array([2**64 - 1, 3], dtype=np.uint64),
            "bool": np.array([[True, False]]),
            "c128": np.array([1 + 2j, -3.5j]),
            "big_endian": np.array([1.0, 2.0], dtype=">f8"),
            "strings": np.array(["ab", "c"]),
            "dates": np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
            "empty": np.zeros((0, 4), dtype=np.int32),
            "zero_dim": np.array(3.5),
            "non_contiguous": np.arange(12.0).reshape(3, 4)[:, ::2],
        },
        "scalars": [
            np.float32(1.25),
            np.float64(2.5),
            np.int64(-7),
            np.uint64(2**64 - 1),
            np.bool_(True),
            np.str_("s"),
        ],
        "tensors": {
            "bf16": torch.tensor([1.0, 2.5, -3.0], dtype=torch.bfloat16),
            "f32": torch.randn(2, 3),
            "i64": torch.arange(4),
            "bool": torch.tensor([True, False]),
            "scalar": torch.tensor(4.0),
            "c128": torch.tensor([1 + 1j], dtype=torch.complex128),
            "f8": torch.tensor([0.5, 1.0]).to(torch.float8_e4m3fn),
            "transposed": torch.arange(6.0).reshape(2, 3).t(),
            "empty": torch.zeros(0, 3),
        },
    }


# --------------------------------------------------------------------------- pack / unpack


def test_pack_unpack_round_trip_nested_structure():
    state = nested_state()
    tensors, skeleton = pack_state(state)
    json.dumps(skeleton, allow_nan=False)  # plain JSON
    assert max_abs_int(skeleton) <= 2**53 - 1  # exact in any JSON reader, not only Python's
    assert all(isinstance(t, torch.Tensor) and t.is_contiguous() for t in tensors.values())
    assert "tensors/f32" in tensors
    back = unpack_state(tensors, json.loads(json.dumps(skeleton)))
    expected = dict(state)
    contiguous = np.ascontiguousarray(state["arrays"]["non_contiguous"])
    expected["arrays"] = dict(state["arrays"], non_contiguous=contiguous)
    expected["tensors"] = dict(state["tensors"], f8=state["tensors"]["f8"].view(torch.uint8))
    back["tensors"]["f8"] = back["tensors"]["f8"].view(torch.uint8)  # float8 has no torch.equal
    assert_same(expected, back)
    assert back["algo"]["big"] == 2**200 + 12345
    assert back["tensors"]["bf16"].dtype == torch.bfloat16
    assert back["arrays"]["big_endian"].dtype == np.dtype(">f8")
    assert back["tensors"]["transposed"].is_contiguous()


def test_pack_copies_tensors_and_arrays():
    tensor, array = torch.zeros(3), np.zeros(3)
    tensors, skeleton = pack_state({"t": tensor, "a": array})
    tensor += 1
    array += 1
    back = unpack_state(tensors, skeleton)
    assert back["t"].sum() == 0 and back["a"].sum() == 0


def test_pack_unpack_optimizer_state_continues_identically():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs = torch.randn(8, 3)

    def step(net, opt):
        opt.zero_grad()
        net(inputs).pow(2).mean().backward()
        opt.step()

    step(model, optimizer)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    tensors, skeleton = pack_state(state)
    assert "optimizer/state/0/exp_avg" in tensors
    back = unpack_state(tensors, json.loads(json.dumps(skeleton)))
    assert list(back["optimizer"]["state"]) == [0, 1, 2, 3]  # int keys stay ints
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)

    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    fresh.load_state_dict(back["model"])
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    fresh_optimizer.load_state_dict(back["optimizer"])
    step(model, optimizer)
    step(fresh, fresh_optimizer)
    for original, restored in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(original, restored)


def test_pack_distinct_keys_for_colliding_paths():
    state = {"a/b": torch.ones(1), "a": {"b": torch.zeros(1)}, "__metadata__": torch.full((1,), 2.0), "$t": 5}
    tensors, skeleton = pack_state(state)
    assert len(tensors) == 3 and "__metadata__" not in tensors
    assert_same(state, unpack_state(tensors, json.loads(json.dumps(skeleton))))
    root, root_skeleton = pack_state(torch.arange(3))
    assert torch.equal(unpack_state(root, root_skeleton), torch.arange(3))


def test_pack_keeps_dict_subclass_contents():
    back = roundtrip(OrderedDict([("z", 1), ("a", 2)]))
    assert back == {"z": 1, "a": 2} and list(back) == ["z", "a"]


@pytest.mark.parametrize(
    ("state", "where", "kind"),
    [
        ({"a": [1, object()]}, "a/1", "object"),
        ({"x": {"y": {1, 2}}}, "x/y", "set"),
        ({"blob": b"bytes"}, "blob", "bytes"),
        ({"arr": np.array([object()], dtype=object)}, "arr", "object"),
        ({"d": {(1, 2): 3}}, "d", "tuple"),
    ],
)
def test_pack_rejects_other_types_naming_path(state, where, kind):
    with pytest.raises(TypeError, match=f"(?s)'{where}'.*{kind}|{kind}.*'{where}'"):
        pack_state(state)


def test_pack_rejects_cycles():
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        pack_state({"loop": loop})


def test_unpack_rejects_malformed_skeleton():
    with pytest.raises(CheckpointError, match="unknown kind"):
        unpack_state({}, {"$t": "pickle", "data": "..."})
    with pytest.raises(CheckpointError, match="no tensor"):
        unpack_state({}, {"$t": "tensor", "key": "_root"})
    with pytest.raises(CheckpointError, match="expected 24 bytes"):
        raw = {"$t": "ndarray", "key": "_root", "dtype": "<f8", "shape": [3], "raw": True}
        unpack_state({"_root": torch.zeros(5, dtype=torch.uint8)}, raw)
    # an entry pointed at another tensor of the same shape and dtype (a swapped key) is refused
    tensors, skeleton = pack_state({"mean": torch.zeros(3), "var": torch.ones(3)})
    skeleton["mean"]["key"] = skeleton["var"]["key"]
    with pytest.raises(CheckpointError, match="not its own"):
        unpack_state(tensors, skeleton)


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trip_and_meta(tmp_path):
    state = nested_state()
    path = save_checkpoint(tmp_path / "run" / "ckpt", state, META)
    assert path == tmp_path / "run" / "ckpt"
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "state.safetensors"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt"]  # no temp or .old left

    back, meta = load_checkpoint(path, expected_algo="ppo")
    back["tensors"]["f8"] = back["tensors"]["f8"].view(torch.uint8)
    expected = dict(state)
    contiguous = np.ascontiguousarray(state["arrays"]["non_contiguous"])
    expected["arrays"] = dict(state["arrays"], non_contiguous=contiguous)
    expected["tensors"] = dict(state["tensors"], f8=state["tensors"]["f8"].view(torch.uint8))
    assert_same(expected, back)

    assert meta["algo"] == "ppo" and meta["config"] == META["config"] and meta["global_step"] == 1234
    assert meta["format_version"] == FORMAT_VERSION
    assert set(meta["versions"]) >= {"rlcore", "torch", "numpy"}
    assert meta["versions"]["torch"] == str(torch.__version__) and meta["versions"]["numpy"] == np.__version__
    data = (path / "state.safetensors").read_bytes()
    assert meta["state_file"]["bytes"] == len(data)
    assert meta["state_file"]["sha256"] == hashlib.sha256(data).hexdigest()
    on_disk = json.loads((path / "meta.json").read_text())
    assert "skeleton" in on_disk and "skeleton" not in meta


def test_save_replaces_existing_checkpoint_and_reuses_loaded_meta(tmp_path):
    path = tmp_path / "ckpt"
    save_checkpoint(path, {"v": torch.tensor(1)}, META)
    _, meta = load_checkpoint(path)
    save_checkpoint(path, {"v": torch.tensor(2)}, dict(meta, global_step=2000))
    state, meta2 = load_checkpoint(path)
    assert int(state["v"]) == 2 and meta2["global_step"] == 2000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_save_refuses_to_replace_files_and_foreign_folders(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    with pytest.raises(FileExistsError):
        save_checkpoint(a_file, {}, META)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "important.csv").write_text("1,2")
    with pytest.raises(FileExistsError):
        save_checkpoint(folder, {}, META)
    assert a_file.read_text() == "keep me" and (folder / "important.csv").exists()


def test_save_rejects_bad_meta(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "c", {}, {"algo": "ppo", "bad": object()})
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "c", {}, {"algo": "ppo", "nan": float("nan")})
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------- never execute code


class _Touch:
    """Unpickling this creates ``marker``: a stand-in for a malicious pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps({"state": _Touch(marker)})


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fails loudly if anything calls pickle or torch.load while loading."""

    def refuse(*args, **kwargs):
        raise AssertionError("checkpoint loading must never unpickle")

    for target, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(target, name, refuse)


def test_pickle_payload_is_live(tmp_path):
    marker = tmp_path / "pwned"
    pickle.loads(pickle_payload(marker))
    assert marker.exists()  # so the refusal tests below would notice an unpickling loader


@pytest.mark.parametrize("match_meta", [False, True])
def test_pickle_as_state_file_is_refused(tmp_path, no_unpickling, match_meta):
    marker = tmp_path / "pwned"
    path = save_checkpoint(tmp_path / "ckpt", {"w": torch.ones(2)}, META)
    payload = pickle_payload(marker)
    (path / "state.safetensors").write_bytes(payload)
    if match_meta:  # an attacker also fixes size and hash: the safetensors parser must still refuse
        meta = json.loads((path / "meta.json").read_text())
        meta["state_file"].update(bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest())
        (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="header unparsable" if match_meta else "corrupted"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.pt", "ckpt.pkl", "agent.zip"])
def test_pickle_file_path_is_refused(tmp_path, no_unpickling, name):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    payload = pickle_payload(marker)
    if name.endswith(".zip"):
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", payload)
    else:
        path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="never unpickles") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "meta.json" in str(info.value)
    assert not marker.exists()


# --------------------------------------------------------------------------- damaged checkpoints


@pytest.fixture
def saved(tmp_path):
    return save_checkpoint(tmp_path / "ckpt", {"w": torch.arange(1000, dtype=torch.float32), "step": 3}, META)


def test_truncated_state_file(saved):
    state_file = saved / "state.safetensors"
    data = state_file.read_bytes()
    state_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"state.safetensors is truncated: \d+ bytes") as info:
        load_checkpoint(saved)
    assert str(state_file) in str(info.value)


def test_flipped_byte_in_state_file(saved):
    state_file = saved / "state.safetensors"
    data = bytearray(state_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    state_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"state\.safetensors is corrupted: its sha256"):
        load_checkpoint(saved)


def test_garbage_meta_json(saved):
    (saved / "meta.json").write_bytes(b"\x00\xffnot json{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: {"foo": 1}, "not describe an rlcore checkpoint"),
        (lambda m: dict(m, format_version=FORMAT_VERSION + 1), "upgrade rlcore"),
        (lambda m: dict(m, format_version="1"), "format version"),
        (lambda m: {k: v for k, v in m.items() if k != "skeleton"}, "lacks skeleton"),
        (lambda m: dict(m, state_file={"bytes": 1}), "lacks state_file.sha256"),
        (lambda m: dict(m, skeleton={"$t": "tensor", "key": "nope"}), "refers to tensor 'nope', not its own"),
    ],
)
def test_bad_meta_contents(saved, edit, match):
    meta_path = saved / "meta.json"
    meta_path.write_text(json.dumps(edit(json.loads(meta_path.read_text()))))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(saved)


def test_unaligned_tensors_are_copied_and_mapped_ones_are_copy_on_write(saved):
    """A header whose length puts the data at an odd offset (valid safetensors) loads the same values; tensors of
    an aligned file are views of a copy-on-write mapping: writing to them never changes the file."""
    expected = load_checkpoint(saved)[0]["w"].clone()
    state_file = saved / "state.safetensors"
    before = state_file.read_bytes()
    loaded = load_checkpoint(saved)[0]["w"]
    loaded += 1.0
    assert state_file.read_bytes() == before and torch.equal(load_checkpoint(saved)[0]["w"], expected)
    length = int.from_bytes(before[:8], "little")
    shifted = (length + 1).to_bytes(8, "little") + before[8 : 8 + length] + b" " + before[8 + length :]
    state_file.write_bytes(shifted)
    meta_path = saved / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["state_file"].update(bytes=len(shifted), sha256=hashlib.sha256(shifted).hexdigest())
    meta_path.write_text(json.dumps(meta))
    assert torch.equal(load_checkpoint(saved)[0]["w"], expected)


def test_missing_files(saved):
    (saved / "state.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"state\.safetensors is missing"):
        load_checkpoint(saved)
    (saved / "meta.json").unlink()
    with pytest.raises(CheckpointError, match=r"meta\.json is missing"):
        load_checkpoint(saved)


def test_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(CheckpointError, match="does not exist") as info:
        load_checkpoint(missing)
    assert str(missing) in str(info.value)


def test_wrong_algo_names_both(saved):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(saved, expected_algo="dqn")
    assert "'ppo'" in str(info.value) and "'dqn'" in str(info.value)
    state, _ = load_checkpoint(saved, expected_algo="ppo")
    assert state["step"] == 3


# --------------------------------------------------------------------------- crash safety


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_exception_before_swap_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ckpt", {"v": torch.tensor(1)}, META)
    real_write = ck._write_bytes_fsync

    def fail_after_state(file, data):
        assert (file.parent / "state.safetensors").stat().st_size > 0  # the new tensors are on disk
        raise OSError("disk full")

    monkeypatch.setattr(ck, "_write_bytes_fsync", fail_after_state)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"v": torch.tensor(2)}, META)
    monkeypatch.setattr(ck, "_write_bytes_fsync", real_write)
    assert int(load_checkpoint(path)[0]["v"]) == 1
    assert entries(tmp_path) == ["ckpt"]  # temp folder removed


def test_exception_between_renames_rolls_back(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ckpt", {"v": torch.tensor(1)}, META)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # temp -> ckpt, after ckpt -> ckpt.old
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        save_checkpoint(path, {"v": torch.tensor(2)}, META)
    monkeypatch.setattr(os, "rename", real_rename)
    assert calls[0] == ("ckpt", "ckpt.old") and calls[1][1] == "ckpt"
    assert int(load_checkpoint(path)[0]["v"]) == 1
    assert entries(tmp_path) == ["ckpt"]


def crash_in_child(path: Path, value: int, crash_point: str) -> None:
    """Runs save_checkpoint in a forked child that dies with os._exit at ``crash_point`` (no cleanup runs)."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            if crash_point == "before_meta":
                ck._write_bytes_fsync = lambda file, data: os._exit(77)
            else:
                real_rename, calls = os.rename, []

                def rename(src, dst):
                    calls.append(src)
                    if len(calls) == 2:  # ckpt already moved to ckpt.old; temp not yet moved in
                        os._exit(77)
                    real_rename(src, dst)

                os.rename = rename
            save_checkpoint(path, {"v": torch.tensor(value)}, META)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 77, "the child did not crash where intended"


posix_only = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork")


@posix_only
def test_crash_before_swap_then_next_save_cleans_up(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", {"v": torch.tensor(1)}, META)
    crash_in_child(path, 2, "before_meta")
    stale = [name for name in entries(tmp_path) if name.startswith("ckpt.tmp-")]
    assert len(stale) == 1 and (tmp_path / stale[0] / "state.safetensors").exists()
    assert int(load_checkpoint(path)[0]["v"]) == 1  # old checkpoint intact

    live_other = tmp_path / f"ckpt.tmp-{os.getppid()}"  # a running process's save in progress
    live_other.mkdir()
    save_checkpoint(path, {"v": torch.tensor(3)}, META)
    assert entries(tmp_path) == sorted(["ckpt", live_other.name])  # dead child's temp removed
    assert int(load_checkpoint(path)[0]["v"]) == 3


@posix_only
def test_crash_between_renames_loads_the_new_complete_temp_then_recovers(tmp_path, caplog):
    path = save_checkpoint(tmp_path / "ckpt", {"v": torch.tensor(1)}, META)
    crash_in_child(path, 2, "between_renames")
    assert "ckpt" not in entries(tmp_path) and "ckpt.old" in entries(tmp_path)

    with caplog.at_level(logging.WARNING, logger="rlcore.checkpoint"):
        state, meta = load_checkpoint(path, expected_algo="ppo")
    assert int(state["v"]) == 2 and meta["algo"] == "ppo"  # the newest complete version: the finished temp folder
    assert "ckpt.tmp-" in caplog.text and "newest complete version" in caplog.text

    save_checkpoint(path, {"v": torch.tensor(3)}, META)
    assert entries(tmp_path) == ["ckpt"]
    assert int(load_checkpoint(path)[0]["v"]) == 3


def load_value(path: Path) -> int | None:
    """``v`` of the checkpoint at ``path``, or None when no complete version exists."""
    try:
        return int(load_checkpoint(path)[0]["v"])
    except CheckpointError as err:
        assert "does not exist" in str(err) or "no complete version" in str(err) or "missing" in str(err), str(err)
        return None


def save_v(path: Path, value: int) -> Path:
    """Saves ``{"v": value}``, with ``v`` in the metadata too (so a test can tell versions apart by meta.json)."""
    return save_checkpoint(path, {"v": torch.tensor(value)}, {**META, "v": value})


def newest_complete_on_disk(folder: Path) -> int | None:
    """The largest ``v`` among the versions in ``folder`` whose meta.json was written completely (meta.json is
    written last, after the state file is complete and fsynced): what loading must return."""
    values = []
    for entry in folder.iterdir():
        try:
            values.append(json.loads((entry / "meta.json").read_text())["v"])
        except (OSError, ValueError):
            continue
    return max(values, default=None)


def kill_states(tmp_path: Path, first_save: bool, value: int = 2) -> list[tuple[int, Path, int | None]]:
    """Kills a save of ``{"v": value}`` at each of its steps, each time in a fresh folder that holds a complete
    checkpoint ``v=1`` (unless ``first_save``); checks that loading then gives the newest complete version and
    returns ``(step, checkpoint path, value loaded)``."""
    states, step = [], 0
    while True:
        step += 1
        path = tmp_path / f"kill{step}" / "ckpt"
        if first_save:
            path.parent.mkdir(parents=True)
        else:
            save_v(path, 1)
        if run_killed(lambda path=path: save_v(path, value), step):
            return states
        loaded = load_value(path)
        assert loaded == newest_complete_on_disk(path.parent), (step, entries(path.parent))
        states.append((step, path, loaded))


@posix_only
@pytest.mark.parametrize("first_save", [False, True], ids=["replacing", "first"])
def test_a_save_killed_at_each_step_leaves_the_newest_complete_checkpoint_loadable(tmp_path, first_save):
    states = kill_states(tmp_path, first_save)
    assert len(states) >= 8, [step for step, _, _ in states]  # mkdir, writes, fsyncs, renames, removals
    loaded = [value for _, _, value in states]
    before = None if first_save else 1
    complete = loaded.index(2)  # from the step after meta.json was written on, the new checkpoint loads
    assert loaded[:complete] == [before] * complete and loaded[complete:] == [2] * (len(loaded) - complete)
    assert any(".tmp-" in name for _, path, _ in states[complete:complete + 1] for name in entries(path.parent))
    between_renames = [step for step, path, _ in states if "ckpt" not in entries(path.parent)
                       and "ckpt.old" in entries(path.parent)]
    assert bool(between_renames) == (not first_save)  # only ckpt.old and the complete temp: loads 2 (checked above)
    for _, path, _ in states:  # whatever state a kill left, the next save succeeds and cleans up
        save_v(path, 3)
        assert entries(path.parent) == ["ckpt"] and load_value(path) == 3


@posix_only
def test_a_save_killed_again_never_loses_the_newest_complete_checkpoint(tmp_path):
    """A kill that left a complete new version not yet in place (temp folder complete; or between the renames),
    then a kill of the next save at each of its steps: the newest complete version always loads."""
    states = kill_states(tmp_path / "first", first_save=False)
    tricky = [path for _, path, value in states if value == 2 and any(".tmp-" in n for n in entries(path.parent))]
    assert len(tricky) >= 2  # complete temp beside the old checkpoint, and beside ckpt.old only
    for index, path in enumerate(tricky):
        snapshot = tmp_path / f"snapshot{index}"
        shutil.copytree(path.parent, snapshot, symlinks=True)
        step = 0
        while True:
            step += 1
            again = tmp_path / f"again{index}-{step}"
            shutil.copytree(snapshot, again, symlinks=True)
            if run_killed(lambda again=again: save_v(again / "ckpt", 3), step):
                break
            newest = newest_complete_on_disk(again)
            assert load_value(again / "ckpt") == newest and newest in (2, 3), (index, step, entries(again))


def test_missing_path_with_broken_old_reports_both(tmp_path):
    old = tmp_path / "ckpt.old"
    old.mkdir()
    (old / "meta.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"(?s)does not exist.*ckpt\.old.*not valid JSON"):
        load_checkpoint(tmp_path / "ckpt")


# --------------------------------------------------------------------------- RNG state


def draws(generator: torch.Generator):
    return (
        [*(random.random() for _ in range(3)), random.gauss(0, 1)],
        [*np.random.rand(3).tolist(), np.random.normal()],
        torch.rand(3).tolist(),
        torch.rand(3, generator=generator).tolist(),
    )


def test_capture_restore_rng_state(tmp_path):
    generator = torch.Generator().manual_seed(123)
    random.gauss(0, 1)  # leaves a cached gaussian in both RNGs
    np.random.normal()
    state = capture_rng_state({"sampler": generator})
    first = draws(generator)
    restore_rng_state(state, {"sampler": generator})
    assert draws(generator) == first

    # Through a checkpoint on disk, into a different generator object.
    save_checkpoint(tmp_path / "ckpt", {"rng": state}, META)
    draws(generator)
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    other = torch.Generator()
    restore_rng_state(loaded["rng"], {"sampler": other})
    assert draws(other) == first


def test_restore_rng_state_names_missing_generator():
    state = capture_rng_state()
    with pytest.raises(KeyError, match="sampler"):
        restore_rng_state(state, {"sampler": torch.Generator()})
