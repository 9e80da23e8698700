"""The exercise checker (segkit.course.exercises.checker) and the notebook set-up (segkit.course)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from segkit.course import notebook as course_module
from segkit.course.exercises.checker import EXERCISES, Exercise, allclose, check, register
from segkit.data import make_shapes, write_mask


def iou_reference(matrix: torch.Tensor) -> torch.Tensor:
    matrix = matrix.double()
    tp = matrix.diag()
    return tp / (matrix.sum(0) + matrix.sum(1) - tp)


def iou_cases(rng):
    return [
        ("a random 3-class matrix", (torch.as_tensor(rng.integers(0, 20, (3, 3))),)),
        ("an absent class", (torch.tensor([[4, 1, 0], [2, 3, 0], [0, 0, 0]]),)),
    ]


@pytest.fixture
def toy_exercise():
    """Register a toy IoU exercise for one test and remove it afterwards."""
    saved = dict(EXERCISES)
    register(Exercise("toy_iou", "per-class IoU", iou_reference, iou_cases, hint="TP / (TP + FP + FN)"))
    yield "toy_iou"
    EXERCISES.clear()
    EXERCISES.update(saved)


def test_hand_case_of_the_toy_reference():
    # rows = truth, cols = prediction. Class 0: TP 4, FP 2, FN 1 -> 4/7. Class 1: TP 3, FP 1, FN 2 -> 3/6.
    iou = iou_reference(torch.tensor([[4, 1, 0], [2, 3, 0], [0, 0, 0]]))
    assert iou[0].item() == pytest.approx(4 / 7) and iou[1].item() == pytest.approx(0.5)
    assert math.isnan(iou[2].item())


def test_correct_answer_passes(toy_exercise, capsys):
    def student(matrix):
        m = matrix.double()
        return torch.stack([m[c, c] / (m[c, :].sum() + m[:, c].sum() - m[c, c]) for c in range(len(m))])

    assert check(toy_exercise, student) is True
    assert "✅ toy_iou: 2/2 cases agree" in capsys.readouterr().out


def test_wrong_answer_fails_with_case_and_hint(toy_exercise, capsys):
    def recall_instead(matrix):  # TP / (TP + FN): a plausible mistake
        m = matrix.double()
        return m.diag() / m.sum(1)

    assert check(toy_exercise, recall_instead) is False
    out = capsys.readouterr().out
    assert out.startswith("❌ toy_iou: 0/2 cases agree. First failure, case 1 (a random 3-class matrix)")
    assert "hint: TP / (TP + FP + FN)" in out


def test_absent_class_must_be_nan(toy_exercise, capsys):
    def zero_for_absent(matrix):
        return torch.nan_to_num(iou_reference(matrix), nan=0.0)

    assert check(toy_exercise, zero_for_absent) is False
    out = capsys.readouterr().out
    assert "1/2 cases agree" in out and "case 2 (an absent class)" in out
    assert "index (2,): expected nan, got 0.0" in out


def test_not_written_yet_and_crashes_are_reported_not_raised(toy_exercise, capsys):
    def stub(matrix):
        raise NotImplementedError("Exercise: write this function")

    assert check(toy_exercise, stub) is False
    assert "not written yet" in capsys.readouterr().out
    assert check(toy_exercise, lambda matrix: matrix / 0 + undefined_name) is False  # noqa: F821
    assert "your function raised NameError" in capsys.readouterr().out
    assert check(toy_exercise, "iou") is False
    assert "expected a function, got str" in capsys.readouterr().out


def test_unknown_name_raises_listing_the_known_ones(toy_exercise):
    with pytest.raises(ValueError, match=r"unknown exercise 'toy_io'\. Did you mean 'toy_iou'\?.*toy_iou"):
        check("toy_io", iou_reference)


def test_student_gets_a_copy_and_the_same_random_seed(capsys):
    def reference(values):
        return values + torch.rand(values.shape)

    def student_mutating(values):
        values += torch.rand(values.shape)  # in place: the reference must not see this
        return values

    saved = dict(EXERCISES)
    try:
        register(Exercise("toy_noise", "add noise", reference, lambda rng: [("ones", (torch.ones(4),))], "h"))
        assert check("toy_noise", student_mutating) is True
        assert check("toy_noise", lambda values: values + torch.rand(values.shape) * 2) is False
    finally:
        EXERCISES.clear()
        EXERCISES.update(saved)


def test_register_refuses_a_second_exercise_with_the_same_name(toy_exercise):
    with pytest.raises(ValueError, match="already registered"):
        register(Exercise("toy_iou", "other", lambda m: m, iou_cases, hint=""))


def test_allclose_messages():
    assert allclose(torch.tensor([1.0, float("nan")]), np.array([1.0, np.nan])) is None
    assert allclose(1.00001, 1.0) is None
    assert allclose(1.1, 1.0) == "expected 1.0, got 1.1"
    assert allclose(torch.zeros(3), torch.zeros(2)) == (
        "expected shape (2,), got shape (3,) (expected [0., 0.], got [0., 0., 0.])"
    )
    assert allclose(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 1.0])) == (
        "1 of 2 values differ; first at index (1,): expected 1.0, got 2.0"
    )
    assert allclose((1.0, torch.ones(2)), (1.0, torch.zeros(2))).startswith("item 1: 2 of 2 values differ")
    assert allclose({"a": 1}, {"a": 2}) == "key 'a': expected 2, got 1"
    assert allclose({"b": 1}, {"a": 1}) == "expected a dict with keys ['a'], got ['b']"
    assert allclose("a", 1.0).startswith("expected a number or an array/tensor, got str")


# ----------------------------------------------------------------------------- segkit.course.setup_notebook


def write_fake_voc(root):
    """A two-image VOC-2012 layout (not a shapes set) under root/VOCdevkit/VOC2012."""
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    (voc / "SegmentationClass").mkdir()
    from PIL import Image

    for image_id in ("2007_000032", "2007_000033"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        write_mask(voc / "SegmentationClass" / f"{image_id}.png", np.zeros((8, 8), np.uint8))
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n2007_000033\n")
    return voc


def test_quick_mode_uses_an_existing_shapes_set_and_tiny_sizes(tmp_path, monkeypatch, capsys):
    make_shapes(tmp_path / "shapes", size=32, n_train=2, n_val=1, n_test=1)
    write_fake_voc(tmp_path)  # present, but quick mode must not use it
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    monkeypatch.setenv("SEGKIT_QUICK", "1")
    setup = course_module.setup_notebook(seed=3)
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith(f"dataset: shapes ({tmp_path / 'shapes'}) -- quick mode")
    assert setup.quick and setup.dataset == "shapes" and setup.root == tmp_path / "shapes"
    assert not (tmp_path / "shapes" / "test-labels").exists()  # no test labels where a student looks
    assert (setup.crop_size, setup.batch_size, setup.epochs, setup.max_steps) == course_module.QUICK_SIZES
    assert setup.num_classes == 21 and setup.classes[15] == "person"
    from segkit.data import VOCSegmentation

    assert len(VOCSegmentation(setup.root, "train")) == 2


def test_seeds_torch_numpy_and_random(tmp_path, monkeypatch, capsys):
    make_shapes(tmp_path / "shapes", size=32, n_train=1, n_val=1, n_test=1)
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    monkeypatch.setenv("SEGKIT_QUICK", "1")
    course_module.setup_notebook(seed=7)
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    assert torch.equal(drawn[0], torch.rand(3))
    assert np.array_equal(drawn[1], np.random.rand(3)) and drawn[2] == random.random()


def test_full_mode_prefers_voc_and_says_so(tmp_path, monkeypatch, capsys):
    voc = write_fake_voc(tmp_path)
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    monkeypatch.delenv("SEGKIT_QUICK", raising=False)
    setup = course_module.setup_notebook()
    assert capsys.readouterr().out.startswith(f"dataset: voc ({voc}) -- found PASCAL VOC-2012")
    assert setup.dataset == "voc" and not setup.quick
    assert (setup.crop_size, setup.batch_size, setup.epochs, setup.max_steps) == course_module.VOC_SIZES
    from segkit.data import VOCSegmentation

    assert len(VOCSegmentation(setup.root, "train")) == 2


def test_full_mode_without_voc_falls_back_to_shapes(tmp_path, monkeypatch, capsys):
    make_shapes(tmp_path / "shapes", size=32, n_train=1, n_val=1, n_test=1)
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    monkeypatch.delenv("SEGKIT_QUICK", raising=False)
    setup = course_module.setup_notebook()
    out = capsys.readouterr().out
    expected = f"dataset: shapes ({tmp_path / 'shapes'}) -- VOC-2012 was not found under {tmp_path}"
    assert out.startswith(expected)
    assert setup.dataset == "shapes" and not setup.quick
    assert (setup.crop_size, setup.batch_size, setup.epochs, setup.max_steps) == course_module.SHAPES_SIZES


def test_missing_shapes_set_is_generated_once(tmp_path, monkeypatch, capsys):
    calls = []

    def small_make_shapes(out_dir):
        calls.append(out_dir)
        return make_shapes(out_dir, size=32, n_train=1, n_val=1, n_test=1)

    monkeypatch.setattr(course_module, "make_shapes", small_make_shapes)
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    monkeypatch.setenv("SEGKIT_QUICK", "1")
    course_module.setup_notebook()
    assert "generated it now" in capsys.readouterr().out
    course_module.setup_notebook()
    assert "generated it now" not in capsys.readouterr().out
    assert calls == [tmp_path / "shapes"]


# ------------------------------------------------------------------------------ the registered exercises


def test_every_session_registers_exercises_whose_reference_passes(capsys):
    import segkit.course.exercises  # noqa: F401  (imports s01 ... s09)

    sessions = {exercise.reference.__module__ for exercise in EXERCISES.values()}
    assert {f"segkit.course.exercises.s0{n}" for n in range(1, 10)} <= sessions
    for name, exercise in EXERCISES.items():
        cases = exercise.make_cases(np.random.default_rng(0))
        assert len(cases) >= 2, f"{name}: give at least two cases (a random one and an edge case)"
        assert exercise.hint and exercise.description, f"{name}: needs a description and a hint"
        assert check(name, exercise.reference) is True, capsys.readouterr().out
