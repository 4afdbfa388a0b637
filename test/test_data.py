import gzip

import numpy as np
import pytest

from edgeml_ros.core.data import DatasetError, load_fashion_mnist


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
