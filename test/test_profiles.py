import copy
import json
from dataclasses import replace

import numpy as np
import pytest

from edgeml_ros.core.codec import IMAGE_ENCODINGS
from edgeml_ros.core.degrade import degrade
from edgeml_ros.core.energy import DEVICE_CLASSES, device_class
from edgeml_ros.core.profiles import (
    ExitTable,
    ProfileError,
    collect_exit_table,
    count_macs,
    load_profile,
    load_profile_conditions,
    profile_model,
    threshold_sweep,
)
from edgeml_ros.core.runtime import SplitRunner
from edgeml_ros.core.train import split_frames, split_tensors
from edgeml_ros.policy.thresholds import pick_threshold


@pytest.fixture(scope="module")
def val_subset(bundle):
    x, y = split_tensors(bundle.meta, "validation")
    return x[:300], y[:300]


@pytest.fixture(scope="module")
def profiled(bundle):
    frames, y = split_frames(bundle.meta, "validation")
    frames, y = frames[:300], y[:300]
    inputs = {"clean": frames, "noise": degrade(frames, "noise")}
    profile, tables = profile_model(bundle, inputs, y, device_class("jetson_nano"), runs=3,
                                    threads=1)  # fmt: skip
    return profile, tables


def saved(tmp_path, profile, tables) -> tuple:
    """The profile saved in `tmp_path`: its path, and its JSON as read back."""
    path = tmp_path / "p.json"
    profile.save(path, tables)
    return path, json.loads(path.read_text())


def test_macs_of_first_block_are_exact(bundle):
    blocks, exits = count_macs(bundle.model, (1, 1, 28, 28))
    assert blocks[0] == 28 * 28 * 16 * 9  # one 3x3 conv, 1 -> 16 channels
    assert exits[-1] == 64 * 10  # pooled 64 channels -> 10 classes
    assert len(blocks) == bundle.model.num_blocks and len(exits) == bundle.model.num_exits


def test_profile_round_trip(tmp_path, profiled):
    profile, tables = profiled
    path = tmp_path / "p.json"
    profile.save(path, tables)
    loaded, loaded_tables = load_profile_conditions(path)
    assert loaded.weights_digest == profile.weights_digest and loaded.samples == 300
    assert [b.output_bytes for b in loaded.blocks] == [b.output_bytes for b in profile.blocks]
    assert list(loaded_tables) == ["clean", "noise"]
    for condition, table in tables.items():
        np.testing.assert_array_equal(loaded_tables[condition].predictions, table.predictions)
    assert loaded_tables["clean"].full_cost == tables["clean"].full_cost
    # noisy inputs are harder: the first exit is less sure of itself
    first_conf = {c: t.confidence["max_prob"][0].mean() for c, t in tables.items()}
    assert first_conf["noise"] < first_conf["clean"]
    assert profile.blocks[1].output_bytes == {"fp32": 4 * 32 * 49, "fp16": 2 * 32 * 49,
                                              "int8": 32 * 49}  # fmt: skip


def test_profiles_hold_the_frame_in_every_image_encoding(tmp_path, profiled):
    profile, tables = profiled
    assert list(profile.image_bytes) == list(IMAGE_ENCODINGS)
    clean, noise = tables["clean"], tables["noise"]
    for encoding, image in clean.images.items():
        assert profile.image_bytes[encoding] == pytest.approx(image.payload_bytes.mean())
    np.testing.assert_array_equal(clean.images["uint8"].payload_bytes, 784)
    # PNG is lossless: the final exit answers as on the raw frame (and as on the tensor)
    np.testing.assert_array_equal(
        clean.images["png"].predictions, clean.images["uint8"].predictions
    )
    assert clean.image_accuracy("uint8") == pytest.approx(clean.exit_accuracy()[-1], abs=0.005)
    assert clean.image_accuracy("jpeg50") < clean.image_accuracy("jpeg90") + 0.02
    assert profile.image_bytes["jpeg50"] < profile.image_bytes["jpeg90"] < 784
    # noise costs PNG bytes
    assert noise.images["png"].payload_bytes.mean() > clean.images["png"].payload_bytes.mean()
    path = tmp_path / "p.json"
    profile.save(path, tables)
    _, loaded = load_profile_conditions(path)
    for condition, table in tables.items():
        for encoding, image in table.images.items():
            got = loaded[condition].images[encoding]
            np.testing.assert_array_equal(got.predictions, image.predictions)
            np.testing.assert_array_equal(got.payload_bytes, image.payload_bytes)
            np.testing.assert_array_equal(got.confidence["entropy"], image.confidence["entropy"])


def test_a_version_3_profile_loads_without_image_encodings(tmp_path, profiled):
    profile, tables = profiled
    path, raw = saved(tmp_path, profile, {c: replace(t, images={}) for c, t in tables.items()})
    del raw["image_bytes"]
    path.write_text(json.dumps({**raw, "version": 3}))
    loaded, loaded_tables = load_profile_conditions(path)
    assert loaded.version == 3 and loaded.image_bytes == {}
    assert all(t.images == {} for t in loaded_tables.values())
    path.write_text(json.dumps({**raw, "version": 4}))  # version 4 must say
    with pytest.raises(ProfileError, match=r"missing or unexpected field.*image_bytes"):
        load_profile(path)


def test_image_encoding_data_is_checked_as_strictly(tmp_path, profiled):
    profile, tables = profiled
    path, raw = saved(tmp_path, profile, tables)
    path.write_text(json.dumps({**raw, "image_bytes": {**raw["image_bytes"], "webp": 300.0}}))
    with pytest.raises(ProfileError, match=r"image encodings \['webp'\] unknown"):
        load_profile(path)
    path.write_text(json.dumps({**raw, "image_bytes": {"png": 300.0}}))
    with pytest.raises(ProfileError, match=r"holds image encodings \['jpeg50', 'jpeg75'"):
        load_profile(path)
    path.write_text(json.dumps(raw))
    clean = tables["clean"]
    broken = dict(clean.images)
    broken["jpeg75"] = replace(broken["jpeg75"], payload_bytes=np.zeros(7))
    profile.save(path, {**tables, "clean": replace(clean, images=broken)})
    with pytest.raises(ProfileError, match=r"\(clean\).*image/jpeg75/payload_bytes has shape"):
        load_profile(path)
    del broken["jpeg75"]
    profile.save(path, {**tables, "clean": replace(clean, images=broken)})
    with pytest.raises(ProfileError, match="lacks array 'image/jpeg75/payload_bytes'"):
        load_profile(path)


def test_profiles_load_with_energy_fields_the_model_does_not_use(tmp_path, profiled):
    path, raw = saved(tmp_path, *profiled)
    assert set(raw["device_class"]) == set(device_class("jetson_nano").as_dict())
    raw["device_class"]["idle_w"] = 1.25
    path.write_text(json.dumps(raw))
    assert load_profile(path)[0].device_class["idle_w"] == 1.25


def test_bad_profiles_are_refused(tmp_path, profiled):
    profile, tables = profiled
    table = tables["clean"]
    path = tmp_path / "p.json"
    with pytest.raises(ProfileError, match="not found"):
        load_profile(path)
    profile.save(path, tables)
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "version": 99}))
    with pytest.raises(ProfileError, match="version 99"):
        load_profile(path)
    path.write_text("{not json")
    with pytest.raises(ProfileError, match="not JSON"):
        load_profile(path)
    profile.save(path, {"clean": replace(table, labels=np.zeros(5)), "noise": tables["noise"]})
    with pytest.raises(ProfileError, match=r"\(clean\).*has shape"):
        load_profile(path)


def test_exit_table_replays_the_runtime_exactly(bundle, val_subset):
    x, y = val_subset
    preds, conf = collect_exit_table(bundle.model, x, y)
    table = ExitTable(preds, conf, y, np.ones(3), 1.0)
    runner = SplitRunner(bundle.model)
    for rule in ("max_prob", "entropy"):
        thresholds = [0.8, 0.9, 0.0]
        taken = table.exit_taken(thresholds, rule)
        for i in range(0, 300, 7):
            fired = runner.run_head(x[i : i + 1], bundle.model.num_blocks, thresholds, rule).fired
            assert fired.exit_index == taken[i]
            assert fired.class_id == preds[taken[i], i]


def test_exit_table_arithmetic():
    preds = np.array([[0, 1, 1, 0], [0, 1, 0, 0]])
    conf = {"max_prob": np.array([[0.9, 0.2, 0.95, 0.1], [1, 1, 1, 1.0]])}
    table = ExitTable(preds, conf, np.array([0, 1, 0, 0]), np.array([1.0, 4.0]), 3.0)
    acc, compute, rates = table.evaluate([0.5, 0.0])
    # samples 0 and 2 exit early (sample 2 wrongly), 1 and 3 run to the end
    assert acc == 0.75 and compute == pytest.approx((1 + 4 + 1 + 4) / 4 / 3)
    np.testing.assert_allclose(rates, [0.5, 0.5])
    assert table.exit_accuracy() == [0.75, 1.0]
    assert threshold_sweep(table)[0][1] == 0.75  # threshold 0: everything exits at exit 0
    assert pick_threshold(table) > 0.95  # only exiting nothing early keeps the accuracy


def test_energy_model():
    nano = device_class("jetson_nano")
    assert nano.frame_energy_j(0.01, 0.002, 0.005) == pytest.approx(
        10.0 * 0.01 + 1.28 * 0.002 + 0.94 * 0.005
    )
    assert all(d.source for d in DEVICE_CLASSES.values())
    with pytest.raises(ValueError, match="unknown device class 'toaster'"):
        device_class("toaster")


def test_the_emulated_drone_is_as_much_slower_as_its_cited_reference_time(profiled):
    pi, nano = device_class("raspberry_pi_4"), device_class("jetson_nano")
    assert pi.compute_slowdown(50.0) == pytest.approx(100.3 / 50.0)
    assert nano.compute_slowdown(50.0) == 1.0  # faster than this machine: no padding
    profile, _ = profiled
    assert profile.reference_ms > 0 and profile.threads == 1 and profile.server_threads == 2
    assert profile.compute_slowdown(pi) == pytest.approx(max(1, 100.3 / profile.reference_ms))
    assert all(b.server_latency_ms_median > 0 for b in profile.blocks)
    assert profile.num_classes == 10
    with pytest.raises(ValueError, match="reference time must be > 0 ms"):
        pi.compute_slowdown(0.0)


def test_profile_cli_rejects_unknown_device(tmp_path, capsys):
    from edgeml_ros.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["profile", "--device-class", "toaster", "--out", "x.json"])
    assert "invalid choice: 'toaster'" in capsys.readouterr().err


def test_split_tensors(bundle):
    x, y = split_tensors(bundle.meta, "validation")
    assert x.shape == (5000, 1, 28, 28) and y.shape == (5000,)
    assert abs(float(x.mean())) < 0.1  # normalized with the training statistics
    with pytest.raises(ValueError, match="split"):
        split_tensors(bundle.meta, "train")


def test_profile_command_writes_a_loadable_profile(tmp_path):
    import subprocess
    import sys

    from edgeml_ros.core.checkpoint import TINY_CHECKPOINT

    out = tmp_path / "tiny.json"
    cmd = [sys.executable, "-m", "edgeml_ros.cli", "profile", "--checkpoint",
           str(TINY_CHECKPOINT), "--runs", "2", "--threads", "1", "--image-encodings", "uint8",
           "png", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    profile, tables = load_profile_conditions(out)
    table = tables["clean"]
    assert profile.command.startswith("edgeml profile") and profile.samples == 5000
    assert profile.conditions == ["clean", "blur", "noise", "low_light"]
    assert profile.device_class["name"] == "jetson_nano"
    assert table.exit_accuracy()[-1] > 0.85
    assert list(profile.image_bytes) == ["uint8", "png"] and "the frame as png: " in proc.stdout
    assert table.image_accuracy("png") == table.image_accuracy("uint8") > 0.85


def test_a_profile_is_timed_again_keeping_what_does_not_depend_on_the_machine(
    profiled, bundle, tmp_path
):
    from edgeml_ros.core.profiles import ProfileError, retime_profile

    profile, tables = profiled
    retimed = retime_profile(profile, bundle, runs=2, threads=1, server_threads=2,
                             command="edgeml profile --retime p.json")  # fmt: skip
    assert retimed.runs == 2 and profile.runs == 3  # the original is left as it was
    assert all(b.latency_ms_median > 0 and b.server_latency_ms_median > 0 for b in retimed.blocks)
    assert [b.output_bytes for b in retimed.blocks] == [b.output_bytes for b in profile.blocks]
    assert [e.macs for e in retimed.exits] == [e.macs for e in profile.exits]
    assert retimed.reference_ms > 0 and retimed.command.endswith("(times: edgeml profile "
                                                                  "--retime p.json)")  # fmt: skip
    path = tmp_path / "retimed.json"
    retimed.save(path, tables)
    _, loaded = load_profile_conditions(path)
    np.testing.assert_array_equal(loaded["clean"].predictions, tables["clean"].predictions)
    other = copy.deepcopy(profile)
    other.weights_digest = "sha256:" + "0" * 64
    with pytest.raises(ProfileError, match="not the profile's model"):
        retime_profile(other, bundle, runs=1)
