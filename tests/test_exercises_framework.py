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
    monkeypatch.delenv("SEGKIT_SIZE", raising=False)
    setup = course_module.setup_notebook(seed=3)
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith(f"dataset: shapes ({tmp_path / 'shapes'}) -- quick size")
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
    monkeypatch.delenv("SEGKIT_SIZE", raising=False)
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
    monkeypatch.delenv("SEGKIT_SIZE", raising=False)
    setup = course_module.setup_notebook()
    assert capsys.readouterr().out.startswith(f"dataset: voc ({voc}) -- found PASCAL VOC-2012")
    assert setup.dataset == "voc" and not setup.quick
    sizes = (setup.crop_size, setup.batch_size, setup.epochs, setup.max_steps)
    assert sizes == course_module.VOC_SIZES["full"]
    assert setup.size == "full"
    from segkit.data import VOCSegmentation

    assert len(VOCSegmentation(setup.root, "train")) == 2


def test_full_mode_without_voc_falls_back_to_shapes(tmp_path, monkeypatch, capsys):
    make_shapes(tmp_path / "shapes", size=32, n_train=1, n_val=1, n_test=1)
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    monkeypatch.delenv("SEGKIT_QUICK", raising=False)
    monkeypatch.delenv("SEGKIT_SIZE", raising=False)
    setup = course_module.setup_notebook()
    out = capsys.readouterr().out
    expected = f"dataset: shapes ({tmp_path / 'shapes'}) -- VOC-2012 was not found under {tmp_path}"
    assert out.startswith(expected)
    assert setup.dataset == "shapes" and not setup.quick
    sizes = (setup.crop_size, setup.batch_size, setup.epochs, setup.max_steps)
    assert sizes == course_module.SHAPES_SIZES["full"]


def test_missing_shapes_set_is_generated_once(tmp_path, monkeypatch, capsys):
    calls = []

    def small_make_shapes(out_dir):
        calls.append(out_dir)
        return make_shapes(out_dir, size=32, n_train=1, n_val=1, n_test=1)

    monkeypatch.setattr(course_module, "make_shapes", small_make_shapes)
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    monkeypatch.setenv("SEGKIT_QUICK", "1")
    monkeypatch.delenv("SEGKIT_SIZE", raising=False)
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


# ----------------------------------------------------------------------------------- sizes and devices


@pytest.mark.parametrize(
    ("size_env", "quick_env", "argument", "expected"),
    [
        (None, None, None, "full"),
        (None, "1", None, "quick"),
        ("class", None, None, "class"),
        ("CLASS ", "1", None, "class"),  # SEGKIT_SIZE wins over SEGKIT_QUICK
        ("quick", None, "full", "full"),  # the argument wins over both
    ],
)
def test_size_comes_from_argument_then_segkit_size_then_quick(
    tmp_path, monkeypatch, capsys, size_env, quick_env, argument, expected
):
    make_shapes(tmp_path / "shapes", size=32, n_train=1, n_val=1, n_test=1)
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    for name, value in (("SEGKIT_SIZE", size_env), ("SEGKIT_QUICK", quick_env)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    setup = course_module.setup_notebook(argument)
    sizes = course_module.QUICK_SIZES if expected == "quick" else course_module.SHAPES_SIZES[expected]
    assert setup.size == expected and setup.quick == (expected == "quick")
    assert (setup.crop_size, setup.batch_size, setup.epochs, setup.max_steps) == sizes
    printed = capsys.readouterr().out
    assert f"size: {expected} -- crop {sizes[0]}, batch {sizes[1]}, {sizes[2]} epoch(s)" in printed


def test_class_size_is_between_quick_and_full():
    for table in (course_module.SHAPES_SIZES, course_module.VOC_SIZES):
        class_steps = table["class"][2] * (table["class"][3] or math.inf)
        full_steps = table["full"][2] * (table["full"][3] or math.inf)
        assert table["class"][2] <= table["full"][2] and class_steps <= full_steps
    assert course_module.QUICK_SIZES[2] <= course_module.SHAPES_SIZES["class"][2]


def test_an_unknown_size_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv("SEGKIT_SIZE", "huge")
    with pytest.raises(ValueError, match=r"\$SEGKIT_SIZE = 'huge': expected one of quick, class, full"):
        course_module.setup_notebook()
    with pytest.raises(ValueError, match=r"size = 'medium'"):
        course_module.setup_notebook("medium")


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_device_choice_prefers_cuda_then_apple_mps_then_cpu(cuda, mps, expected):
    from segkit.inference import choose_device

    assert choose_device(cuda=cuda, mps=mps) == expected


def test_notebook_and_auto_device_use_mps_where_torch_reports_it(tmp_path, monkeypatch, capsys):
    """On a Mac with an Apple-silicon GPU torch reports MPS and no CUDA: course.device and `auto` say mps."""
    from segkit.inference import default_device, resolve_device

    make_shapes(tmp_path / "shapes", size=32, n_train=1, n_val=1, n_test=1)
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert default_device() == "mps"
    assert resolve_device("auto") == torch.device("mps")  # train.device: auto, segkit evaluate/predict
    assert course_module.setup_notebook("quick").device == "mps"
    assert "device mps" in capsys.readouterr().out


# ------------------------------------------------------------------------ refusals, whole-function checks


def _refusing_sqrt(x: float) -> float:
    if x < 0:
        raise ValueError(f"negative input {x}")
    return math.sqrt(x)


@pytest.fixture
def sqrt_exercise():
    saved = dict(EXERCISES)
    register(Exercise("toy_sqrt", "square root, refusing negatives", _refusing_sqrt,
                      lambda rng: [("4", (4.0,)), ("a random number", (float(rng.uniform(1, 9)),)),
                                   ("a negative number must be refused", (-1.0,))],
                      hint="raise ValueError for x < 0"))  # fmt: skip
    yield "toy_sqrt"
    EXERCISES.clear()
    EXERCISES.update(saved)


def test_a_case_where_the_reference_raises_expects_the_same_error(sqrt_exercise, capsys):
    assert check(sqrt_exercise, _refusing_sqrt) is True
    assert check(sqrt_exercise, lambda x: math.sqrt(abs(x))) is False
    out = capsys.readouterr().out
    assert "case 3 (a negative number must be refused): this input must be refused with ValueError " in out
    assert "(negative input -1.0), but your function returned 1.0" in out

    def wrong_error(x):
        if x < 0:
            raise TypeError("no")
        return math.sqrt(x)

    assert check(sqrt_exercise, wrong_error) is False
    assert "your function raised TypeError: no, expected ValueError" in capsys.readouterr().out


def test_whole_check_runs_after_the_cases_and_counts_as_one(capsys):
    saved = dict(EXERCISES)
    try:
        register(Exercise("toy_random", "a random number in [0, 1)", random.random,
                          lambda rng: [("one draw", ())], hint="random.random()",
                          compare=lambda got, expected: None if 0 <= got < 1 else "not in [0, 1)",
                          whole_check=lambda fn: None if len({fn() for _ in range(5)}) == 5
                          else "always the same number"))  # fmt: skip
        assert check("toy_random", random.random) is True
        assert "2/2 cases agree" in capsys.readouterr().out
        assert check("toy_random", lambda: 0.25) is False  # in range: only the whole-function check can tell
        out = capsys.readouterr().out
        assert "1/2 cases agree. First failure, case 2 (the function as a whole): always the same" in out
    finally:
        EXERCISES.clear()
        EXERCISES.update(saved)


def test_run_checks_gives_a_verdict_without_printing(toy_exercise, capsys):
    from segkit.course.exercises.checker import run_checks

    verdict = run_checks(toy_exercise, iou_reference)
    assert (verdict.status, verdict.agreed, verdict.total, verdict.passed) == ("passed", 2, 2, True)

    def stub(matrix):
        raise NotImplementedError

    assert run_checks(toy_exercise, stub).status == "not written"
    assert run_checks(toy_exercise, 3).status == "not a function"
    wrong = run_checks(toy_exercise, lambda m: iou_reference(m) * 2)
    assert (wrong.status, wrong.agreed, wrong.passed) == ("wrong", 0, False)
    assert capsys.readouterr().out == ""


def _fingerprint(value):
    """Something comparable with == for the arguments of a case (tensors and arrays by their bytes)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, list | tuple):
        return tuple(_fingerprint(item) for item in value)
    if isinstance(value, dict):
        return tuple((key, _fingerprint(item)) for key, item in sorted(value.items()))
    return value if isinstance(value, int | float | str | bool | type(None)) else repr(type(value))


def test_every_exercise_draws_some_cases_from_the_seed():
    """The grader draws its cases with a seed the notebooks do not contain: every exercise must have cases
    that change with the seed, so that answers written for the seed-0 cases do not pass."""
    import segkit.course.exercises  # noqa: F401

    for name, exercise in EXERCISES.items():
        first = [_fingerprint(args) for _, args in exercise.make_cases(np.random.default_rng(0))]
        second = [_fingerprint(args) for _, args in exercise.make_cases(np.random.default_rng(12345))]
        assert first != second, f"{name}: no case depends on the seed"
