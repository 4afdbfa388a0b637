import gzip
import shutil

import numpy as np
import pytest
from PIL import Image

from edgeml_ros.core.data import VALIDATION_SIZE, DatasetError, load_fashion_mnist, open_dataset


def test_real_fashion_mnist_test_split(fmnist_test):
    assert fmnist_test.images.shape == (10000, 28, 28)
    assert fmnist_test.images.dtype == np.uint8
    assert sorted(np.unique(fmnist_test.labels)) == list(range(10))
    assert len(fmnist_test.class_names) == 10


def test_missing_dataset_names_the_file(tmp_path):
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz not found"):
        load_fashion_mnist("test", root=tmp_path)


def test_corrupt_idx_is_refused(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" * 4))
    with pytest.raises(DatasetError, match="magic"):
        load_fashion_mnist("test", root=tmp_path)


def test_unknown_split():
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation")


def test_cifar10_is_never_downloaded(tmp_path):
    from edgeml_ros.core.data import load_cifar10, load_dataset

    with pytest.raises(DatasetError, match="never downloaded"):
        load_cifar10("test", root=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", "test")


def make_folder(root, fmnist_test, classes, per_class, colour=False):
    """An ImageFolder of real Fashion-MNIST images, sizes varying; tinted RGB if `colour`."""
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(fmnist_test.labels == label)[:per_class]):
            pixels = fmnist_test.images[i]
            if colour:
                pixels = np.stack([pixels, pixels // 2, 255 - pixels], axis=-1)
            image = Image.fromarray(pixels)
            image.resize((28 + 4 * k, 28 + 2 * k)).save(root / name / f"{i}.png")
    return root


def test_image_folder_of_colour_images_of_any_size(tmp_path, fmnist_test):
    root = make_folder(tmp_path / "f", fmnist_test, ["b", "a"], 10, colour=True)
    source = open_dataset(f"imagefolder:{root}", validation_fraction=0.2)
    assert source.class_names == ("a", "b") and source.channels == 3
    assert source.name == f"imagefolder:{root.resolve()}" and source.splits == (
        "train",
        "validation",
    )
    train, val = source.load("train", (16, 12)), source.load("validation", (16, 12))
    assert train.images.shape == (16, 16, 12, 3) and train.images.dtype == np.uint8
    assert val.images.shape == (4, 16, 12, 3) and sorted(val.labels) == [0, 0, 1, 1]
    assert source.split_record["train"] == 16 and len(source.split_record["files_sha256"]) == 64
    # the split is fixed by the seed, and differs between seeds
    again = open_dataset(f"imagefolder:{root}", validation_fraction=0.2)
    assert again.split_record == source.split_record
    np.testing.assert_array_equal(again.load("validation", (16, 12)).images, val.images)
    other = [open_dataset(f"imagefolder:{root}", s, 0.2).load("validation", (8, 8)).images
             for s in range(1, 4)]  # fmt: skip
    assert any(not np.array_equal(o, source.load("validation", (8, 8)).images) for o in other)


def test_image_folder_of_grey_images(tmp_path, fmnist_test):
    root = make_folder(tmp_path / "g", fmnist_test, ["x", "y"], 4)
    source = open_dataset(f"imagefolder:{root}", validation_fraction=0.25)
    assert source.channels == 1 and source.load("train", (28, 28)).images.shape == (6, 28, 28)


def test_image_folder_errors_name_what_is_wrong(tmp_path, fmnist_test):
    with pytest.raises(DatasetError, match=r"image folder .*nowhere not found"):
        open_dataset(f"imagefolder:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"Couldn't find any class folder"):
        open_dataset(f"imagefolder:{tmp_path / 'empty'}")
    root = make_folder(tmp_path / "h", fmnist_test, ["x", "y"], 4)
    (root / "hat").mkdir()
    with pytest.raises(DatasetError, match=r"no valid file for the classes hat"):
        open_dataset(f"imagefolder:{root}")
    (root / "hat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"broken\.png: not a readable image"):
        open_dataset(f"imagefolder:{root}")
    (root / "hat" / "broken.png").unlink()
    shutil.rmtree(root / "hat")
    with pytest.raises(DatasetError, match=r"the validation split is empty \(8 images\)"):
        open_dataset(f"imagefolder:{root}", validation_fraction=0.01)
    with pytest.raises(DatasetError, match=r"has no 'test' split"):
        open_dataset(f"imagefolder:{root}", validation_fraction=0.3).load("test", (8, 8))


def test_fashion_mnist_source_holds_out_the_last_training_images():
    source = open_dataset("fashion_mnist")
    train, val = source.load("train"), source.load("validation")
    assert (len(train), len(val)) == (60000 - VALIDATION_SIZE, VALIDATION_SIZE)
    assert source.channels == 1 and len(source.load("test")) == 10000


def test_drone_scenes_are_fixed_rgb_frames_of_real_items(fmnist_test):
    from edgeml_ros.core.scenes import SCENE_SIZE, SPLIT_SIZES

    source = open_dataset("drone_scenes")
    assert source.channels == 3 and source.class_names == fmnist_test.class_names
    frames = source.frames("test")
    assert len(frames) == SPLIT_SIZES["test"] == len(fmnist_test)
    first, _ = frames[0]
    assert first.shape == (SCENE_SIZE, SCENE_SIZE, 3) and first.dtype == np.uint8
    # test scene i shows test item i; the same scene whenever it is composed
    assert [frames[i][1] for i in range(20)] == fmnist_test.labels[:20].tolist()
    assert np.array_equal(open_dataset("drone_scenes").frames("test")[0][0], first)
    # colour and clutter vary from scene to scene
    assert not np.array_equal(frames[1][0], first) and first.std(axis=(0, 1)).min() > 0
    validation = source.frames("validation")
    assert [validation[i][1] for i in range(5)] == source._items["validation"][1][:5].tolist()
    with pytest.raises(DatasetError, match=r"test has scenes 0\.\.9999, not 10000"):
        frames[10000]
    with pytest.raises(DatasetError, match="has no 'extra' split"):
        source.frames("extra")
    with pytest.raises(DatasetError, match="frames are 96x96, not"):
        source.load("test", (32, 32))


def test_degradations_grow_with_severity():
    import torch

    from edgeml_ros.core.degrade import degrade

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for condition in ("blur", "noise", "low_light"):
        change = [float((degrade(x, condition, severity=s) - x).abs().mean()) for s in (1, 2, 3)]
        assert 0 < change[0] < change[1] < change[2], (condition, change)
    assert torch.equal(degrade(x, "noise", seed=3), degrade(x, "noise", seed=3))
    with pytest.raises(ValueError, match="severity must be in"):
        degrade(x, "blur", severity=0)
