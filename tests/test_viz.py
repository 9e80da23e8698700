"""segkit.viz: pixel colours, blends and plotted values checked against hand computations."""

from __future__ import annotations

import csv
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from segkit import viz  # noqa: E402
from segkit.data import IMAGENET_MEAN, IMAGENET_STD, VOC_CLASSES  # noqa: E402
from segkit.trainer import Trainer  # noqa: E402

CREAM = (224, 224, 192)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_colorize_uses_the_voc_palette_by_hand():
    mask = np.array([[0, 1, 2], [3, 15, 255]], dtype=np.uint8)
    expected = np.array(
        [[(0, 0, 0), (128, 0, 0), (0, 128, 0)], [(128, 128, 0), (192, 128, 128), CREAM]], dtype=np.uint8
    )
    assert np.array_equal(viz.colorize(mask), expected)
    assert np.array_equal(viz.colorize(torch.as_tensor(mask, dtype=torch.int64)), expected)


def test_void_is_distinct_from_every_class_colour():
    coloured = viz.colorize(np.arange(21).reshape(3, 7))
    class_colours = {tuple(c) for c in coloured.reshape(-1, 3).tolist()}
    assert len(class_colours) == 21 and CREAM not in class_colours
    assert viz.colorize(np.array([[255]]))[0, 0].tolist() == list(CREAM)
    assert viz.colorize(np.array([[255, 1]]), void_colour=(255, 255, 255)).tolist() == [
        [[255, 255, 255], [128, 0, 0]]
    ]


def test_bad_masks_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"must be 2-D \(H, W\), got shape \(1, 2, 2\)"):
        viz.colorize(np.zeros((1, 2, 2), np.int64))
    with pytest.raises(ValueError, match="integer class indices, got dtype float32"):
        viz.colorize(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"values must be in 0..255, found -1..0"):
        viz.colorize(np.array([[-1, 0]]))


def test_overlay_blend_by_hand():
    image = np.array([[[100, 50, 200], [12, 20, 32], [255, 255, 255]]], dtype=np.uint8)  # (1, 3, 3) HWC
    mask = np.array([[0, 1, 255]])
    out = viz.overlay(image, mask, alpha=0.25)
    # background keeps the image; class 1 (128, 0, 0): 0.75 * (12, 20, 32) + 0.25 * (128, 0, 0)
    # void (224, 224, 192): 0.75 * 255 + 0.25 * (224, 224, 192) = (247.25, 247.25, 239.25)
    assert out.tolist() == [[[100, 50, 200], [41, 15, 24], [247, 247, 239]]]
    assert out.dtype == np.uint8
    assert viz.overlay(image, mask, alpha=0.0).tolist() == image.tolist()


def test_overlay_of_a_normalised_chw_tensor_equals_the_uint8_image():
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (3, 5, 6), generator=generator, dtype=torch.uint8)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    normalised = (pixels.float() / 255 - mean) / std
    mask = torch.randint(0, 4, (5, 6), generator=generator)
    assert np.array_equal(viz.image_to_uint8(normalised), pixels.permute(1, 2, 0).numpy())
    assert np.array_equal(viz.overlay(normalised, mask), viz.overlay(pixels.permute(1, 2, 0).numpy(), mask))
    with pytest.raises(ValueError, match=r"mask shape \(4, 4\) differs from image size \(5, 6\)"):
        viz.overlay(pixels, torch.zeros(4, 4, dtype=torch.int64))


def test_error_map_colours_by_hand():
    pred = torch.tensor([[0, 1], [2, 3]])
    target = torch.tensor([[0, 2], [255, 3]])
    out = viz.error_map(pred, target)
    assert out.tolist() == [
        [list(viz.CORRECT_COLOUR), list(viz.WRONG_COLOUR)],
        [list(CREAM), list(viz.CORRECT_COLOUR)],
    ]
    assert len({viz.CORRECT_COLOUR, viz.WRONG_COLOUR, viz.VOID_COLOUR}) == 3


def test_show_predictions_panels_hold_image_truth_prediction_and_errors():
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (3, 3, 6, 6), generator=generator, dtype=torch.uint8)
    targets = torch.randint(0, 3, (3, 6, 6), generator=generator)
    targets[:, 0] = 255
    preds = torch.randint(0, 3, (3, 6, 6), generator=generator)
    figure = viz.show_predictions(pixels, targets, preds, max_rows=2)
    axes = np.asarray(figure.axes).reshape(2, 4)
    for row in range(2):
        panels = [ax.images[0].get_array() for ax in axes[row]]
        assert np.array_equal(panels[0], pixels[row].permute(1, 2, 0).numpy())
        assert np.array_equal(panels[1], viz.colorize(targets[row]))
        assert np.array_equal(panels[2], viz.colorize(preds[row]))
        assert np.array_equal(panels[3], viz.error_map(preds[row], targets[row]))
    legend_names = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend_names == ["background", "aeroplane", "bicycle", "void"]
    only_truth = viz.show_predictions(pixels, targets)
    assert len(only_truth.axes) == 3 * 2


def test_confusion_matrix_rows_are_normalised_by_hand():
    # rows = truth, columns = prediction. Class 1 is never true (an empty row), class 3 appears nowhere.
    matrix = torch.tensor([[3, 1, 0, 0], [0, 0, 0, 0], [2, 2, 4, 0], [0, 0, 0, 0]])
    figure = viz.plot_confusion_matrix(matrix, VOC_CLASSES[:4])
    ax = figure.axes[0]
    shown = ax.images[0].get_array()
    assert shown.shape == (3, 3)  # class 3 left out
    expected = np.array([[0.75, 0.25, 0.0], [np.nan, np.nan, np.nan], [0.25, 0.25, 0.5]])
    assert np.allclose(shown.filled(np.nan), expected, equal_nan=True)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["background", "aeroplane", "bicycle"]
    counts = viz.plot_confusion_matrix(matrix, VOC_CLASSES[:4], normalize=None, only_present=False)
    assert np.array_equal(counts.axes[0].images[0].get_array(), matrix.numpy())
    with pytest.raises(ValueError, match="normalize must be 'row' or None"):
        viz.plot_confusion_matrix(matrix, normalize="column")


def test_per_class_bars_equal_the_values():
    values = torch.tensor([0.5, float("nan"), 0.25, 0.75])
    figure = viz.plot_per_class(values, VOC_CLASSES[:4], title="IoU")
    ax = figure.axes[0]
    assert [bar.get_height() for bar in ax.patches] == [0.5, 0.25, 0.75]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["background", "bicycle", "bird"]
    assert [tuple(bar.get_facecolor()[:3]) for bar in ax.patches][1] == (0.0, 0.5019607843137255, 0.0)
    assert ax.lines[0].get_ydata()[0] == pytest.approx(0.5)  # mean of the shown bars
    all_bars = viz.plot_per_class(values, VOC_CLASSES[:4], skip_nan=False).axes[0]
    assert len(all_bars.patches) == 4 and math.isnan(all_bars.patches[1].get_height())


def test_lr_curves_share_an_axes():
    figure, ax = plt.subplots()
    assert viz.plot_lr_curve([0.1, 0.05, 0.01], ax=ax, label="poly") is figure
    viz.plot_lr_curve(np.array([0.2, 0.2]), ax=ax, label="constant")
    assert ax.lines[0].get_ydata().tolist() == [0.1, 0.05, 0.01]
    assert ax.lines[0].get_xdata().tolist() == [0, 1, 2]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["poly", "constant"]


def test_legend_patches_names_and_colours():
    patches = viz.legend_patches(torch.tensor([[15, 0], [255, 15]]))
    assert [p.get_label() for p in patches] == ["background", "person", "void"]
    assert np.allclose(patches[1].get_facecolor()[:3], np.array([192, 128, 128]) / 255)


def test_training_curves_read_the_trainers_metrics_csv(tmp_path):
    torch.manual_seed(0)
    images = torch.randn(8, 3, 8, 8)
    masks = torch.randint(0, 3, (8, 8, 8))
    masks[:, :2] = 255
    loader = DataLoader(TensorDataset(images, masks), batch_size=4)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model, nn.CrossEntropyLoss(ignore_index=255), optimizer, loader, loader, num_classes=3,
                      class_names=["a", "b", "c"], run_dir=tmp_path / "run", epochs=3, device="cpu",
                      progress_bar=False, print_table=False, tensorboard=False)  # fmt: skip
    trainer.fit()
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3

    figure = viz.plot_training_curves(tmp_path / "run" / "metrics.csv", keys=("train_loss", "miou"))
    loss_ax, miou_ax = figure.axes
    assert loss_ax.lines[0].get_xdata().tolist() == [1.0, 2.0, 3.0]
    assert loss_ax.lines[0].get_ydata().tolist() == [float(row["train_loss"]) for row in rows]
    assert miou_ax.lines[0].get_ydata().tolist() == [float(row["miou"]) for row in rows]
    assert miou_ax.lines[0].get_ydata()[-1] == pytest.approx(trainer.val_metrics["miou"])
    assert loss_ax.get_title() == "train_loss"

    both = viz.plot_training_curves({"first": tmp_path / "run", "again": tmp_path / "run"}, keys="lr")
    assert [t.get_text() for t in both.axes[0].get_legend().get_texts()] == ["first", "again"]
    with pytest.raises(ValueError, match="no column 'accuracy'; the columns are epoch, step, train_loss"):
        viz.plot_training_curves(tmp_path / "run", keys=("accuracy",))
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        viz.plot_training_curves(tmp_path / "nothing.csv")
