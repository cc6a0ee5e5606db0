"""IoUMetric against mmseg 0.24.1's eval_metrics (fixtures from tools/make_metric_fixtures.py)."""

import math

import numpy as np
import pytest
import torch

from ssformer.metrics import PER_CLASS, IoUMetric, format_table, paper_summary
from tests.conftest import FIXTURES


def _assert_same(actual, expected):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual[~np.isnan(actual)], expected[~np.isnan(expected)], rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["handmade", "random19", "ignore0"])
def test_matches_mmseg(name):
    data = np.load(FIXTURES / f"metrics_{name}.npz")
    metric = IoUMetric(int(data["num_classes"]), ignore_index=int(data["ignore_index"]))
    count = sum(1 for key in data.files if key.startswith("pred_"))
    for i in range(count):
        # alternate numpy and torch inputs
        pred, label = data[f"pred_{i}"], data[f"label_{i}"]
        metric.update(torch.from_numpy(pred) if i % 2 else pred, torch.from_numpy(label) if i % 2 else label)
    results = metric.compute()
    _assert_same(results["aAcc"], data["aAcc"])
    for key in PER_CLASS:
        _assert_same(results[key], data[key])
        _assert_same(results["m" + key], data["m" + key])


def test_handmade_fixture_covers_the_nan_cases():
    data = np.load(FIXTURES / "metrics_handmade.npz")
    assert np.isnan(data["IoU"]).any() and np.isnan(data["Precision"]).any() and np.isnan(data["Recall"]).any()
    assert any(math.isnan(f) and p == 0 for f, p in zip(data["Fscore"], data["Precision"]))


def test_batched_equals_per_image_and_counts_are_int64():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 5, size=(3, 8, 9))
    label = rng.integers(0, 5, size=(3, 8, 9))
    label[:, 0] = 255
    one, many = IoUMetric(5), IoUMetric(5)
    one.update(pred, label)
    for p, l in zip(pred, label):
        many.update(p, l)
    assert one.counts.dtype == torch.int64
    assert torch.equal(one.counts, many.counts)
    # hand count for class 0: intersection and label area
    valid = label != 255
    assert one.counts[0, 0] == ((pred == 0) & (label == 0) & valid).sum()
    assert one.counts[3, 0] == ((label == 0) & valid).sum()
    assert one.counts[2, 0] == ((pred == 0) & valid).sum()


def test_perfect_prediction():
    label = np.array([[0, 1], [2, 255]])
    metric = IoUMetric(4)
    metric.update(np.where(label == 255, 3, label), label)
    results = metric.compute()
    assert results["aAcc"] == 1.0 and results["mIoU"] == 1.0
    assert math.isnan(results["IoU"][3])  # class 3 absent from the labels; its prediction was ignored


def test_bad_inputs():
    metric = IoUMetric(3)
    with pytest.raises(ValueError, match="shape"):
        metric.update(np.zeros((2, 3), int), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match=r"label values \[3, 7\]"):
        metric.update(np.zeros((4,), int), np.array([0, 3, 7, 255]))
    with pytest.raises(ValueError, match=r"prediction values \[-1\]"):
        metric.update(np.array([0, -1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        metric.update(np.zeros((2,), np.float32), np.zeros((2,), int))


def test_all_reduce_without_distributed_is_a_no_op():
    metric = IoUMetric(2)
    metric.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    before = metric.counts.clone()
    metric.all_reduce()
    assert torch.equal(metric.counts, before)


def test_format_table():
    metric = IoUMetric(3)
    metric.update(np.array([0, 1, 1, 2]), np.array([0, 1, 0, 255]))
    table = format_table(metric.compute(), ["road", "car", "sky"])
    lines = table.splitlines()
    assert lines[0].split() == ["Class", *PER_CLASS]
    assert lines[2].split()[:2] == ["road", "50.00"]  # IoU of road: 1 / (1 + 1)
    assert lines[4].split()[1] == "-"  # sky: no label, no valid prediction (0/0, explained below the table)
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        format_table(metric.compute(), ["a", "b"])


def test_paper_summary_gives_global_and_class_average_accuracy():
    # class 0: I 2, L 3, U 3; class 1: I 1, L 1, U 2 -> aAcc 3/4, mAcc (2/3 + 1)/2, mIoU (2/3 + 1/2)/2
    metric = IoUMetric(2)
    metric.update(np.array([0, 0, 1, 1, 0]), np.array([0, 0, 0, 1, 255]))
    assert paper_summary(metric.compute()) == ("global accuracy (aAcc) 75.00  class-average accuracy (mAcc) 83.33  "
                                               "mean IoU (mIoU) 58.33  (percent)")


def _reduce_worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        data = np.load(FIXTURES / "metrics_random19.npz")
        metric = IoUMetric(19)
        for i in range(rank, 3, world_size):  # each rank sees a different subset of the images
            metric.update(data[f"pred_{i}"], data[f"label_{i}"])
        metric.all_reduce()
        if rank == 0:
            torch.save(metric.counts, out_file)
    finally:
        torch.distributed.destroy_process_group()


def test_all_reduce_sums_counts_over_processes(tmp_path):
    out = tmp_path / "counts.pt"
    torch.multiprocessing.spawn(_reduce_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2)
    data = np.load(FIXTURES / "metrics_random19.npz")
    single = IoUMetric(19)
    for i in range(3):
        single.update(data[f"pred_{i}"], data[f"label_{i}"])
    assert torch.equal(torch.load(out, weights_only=True), single.counts)
