"""segkit.course.student: student copies of the notebooks (solutions stubbed), on a small handmade
notebook."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from segkit.cli import main as cli_main
from segkit.course.exercises.checker import EXERCISES, Exercise, check, register
from segkit.course.student import FUNCTION_STUB, make_student, stub_source

FUNCTION_MESSAGE = "Exercise: write this function — see the instructions above"
CELL_MESSAGE = "Exercise: write this cell — see the instructions above"

IOU_SOLUTION = '''\
# Exercise 1: IoU from a confusion matrix
import torch


def my_iou(matrix: torch.Tensor,
           eps: float = 0.0) -> torch.Tensor:
    """IoU per class: TP / (TP + FP + FN).

    matrix: (C, C) int64, rows = truth.
    """
    # the diagonal holds the true positives
    tp = matrix.diag().double()
    return tp / (matrix.sum(0) + matrix.sum(1) - tp + eps)
'''

CLASS_SOLUTION = '''\
from torch import nn


class DoubleConv(nn.Module):
    """Two 3x3 convolutions."""

    hidden = 8

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    @property
    def width(self):
        return self.hidden

    def forward(self, x):
        return self.conv(self.conv(x))


def double(x): return 2 * x
'''

ASSIGNMENT_SOLUTION = "weights = 1.0 / counts\nweights = weights / weights.sum()\n"


def solution(source):
    return new_code_cell(source, metadata={"tags": ["solution"]})


def handmade_notebook():
    plain = new_code_cell("total = 1 + 1\nprint(total)", execution_count=3,
                          outputs=[new_output("stream", name="stdout", text="2\n")])  # fmt: skip
    notebook = new_notebook(
        cells=[
            new_markdown_cell("# Session 0\nWhat you'll learn: stubs."),
            new_code_cell("from segkit.course import setup_notebook\ncourse = setup_notebook()"),
            plain,
            new_markdown_cell("## Exercises\nWrite `my_iou`."),
            solution(IOU_SOLUTION),
            new_code_cell('check("toy_iou", my_iou)', metadata={"tags": ["check"]}),
            solution(CLASS_SOLUTION),
            solution(ASSIGNMENT_SOLUTION),
            solution("%%time\nx = 1\n"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    notebook.cells[4].outputs = [new_output("execute_result", data={"text/plain": "done"}, execution_count=5)]
    notebook.cells[4].execution_count = 5
    return notebook


def test_function_stub_keeps_imports_header_and_docstring_only():
    stub = stub_source(IOU_SOLUTION)
    assert stub == (
        "# Exercise 1: IoU from a confusion matrix\n"
        "import torch\n"
        "\n\n"
        "def my_iou(matrix: torch.Tensor,\n"
        "           eps: float = 0.0) -> torch.Tensor:\n"
        '    """IoU per class: TP / (TP + FP + FN).\n'
        "\n"
        "    matrix: (C, C) int64, rows = truth.\n"
        '    """\n'
        f"    {FUNCTION_STUB}\n"
    )


def test_class_methods_and_one_line_functions_are_each_stubbed():
    stub = stub_source(CLASS_SOLUTION)
    assert "self.conv" not in stub and "hidden = 8" not in stub and "2 * x" not in stub
    assert stub.count(FUNCTION_STUB) == 4  # __init__, width, forward, double
    assert "    @property\n    def width(self):\n        " + FUNCTION_STUB in stub
    assert "def double(x):\n    " + FUNCTION_STUB in stub
    assert stub_source("def f(a,\n      b): return a\n") == "def f(a, b):\n    " + FUNCTION_STUB + "\n"
    namespace = {}
    exec(compile(stub, "<stub>", "exec"), namespace)  # the stub defines the names...
    with pytest.raises(NotImplementedError, match=FUNCTION_MESSAGE):
        namespace["DoubleConv"](3)  # ...and they raise when used
    with pytest.raises(NotImplementedError, match=FUNCTION_MESSAGE):
        namespace["double"](1)


def test_cells_without_a_function_become_a_raising_comment():
    for source in (ASSIGNMENT_SOLUTION, "%%time\nx = 1\n"):
        stub = stub_source(source)
        assert stub == f"# {CELL_MESSAGE}.\nraise NotImplementedError(\"{CELL_MESSAGE}\")\n"
        with pytest.raises(NotImplementedError, match=CELL_MESSAGE):
            exec(compile(stub, "<stub>", "exec"), {})
    mixed = stub_source("def f(x):\n    return x\n\n\nresult = f(2)\n")
    assert mixed.endswith(f'\n\n\nraise NotImplementedError("{CELL_MESSAGE}")\n') and "result" not in mixed


def test_make_student_stubs_solutions_and_copies_the_rest(tmp_path, capsys):
    src = tmp_path / "notebooks"
    src.mkdir()
    original = handmade_notebook()
    nbformat.write(original, src / "00_demo.ipynb")
    written = make_student(src, tmp_path / "student")
    assert written == [tmp_path / "student" / "notebooks" / "00_demo.ipynb"]
    assert "4 solution cell(s) replaced by stubs" in capsys.readouterr().out

    student = nbformat.read(written[0], as_version=4)
    nbformat.validate(student)
    assert len(student.cells) == len(original.cells)
    for before, after in zip(original.cells, student.cells, strict=True):
        if after.cell_type == "code":
            assert after.outputs == [] and after.execution_count is None
        assert after.metadata == before.metadata
        if "solution" in before.metadata.get("tags", []):
            assert after.source == stub_source(before.source) != before.source
        else:
            assert after.source == before.source  # byte-identical
    markdown_before = [json.dumps(c, sort_keys=True) for c in original.cells if c.cell_type == "markdown"]
    markdown_after = [json.dumps(c, sort_keys=True) for c in student.cells if c.cell_type == "markdown"]
    assert markdown_after == markdown_before
    assert nbformat.read(src / "00_demo.ipynb", as_version=4) == original  # the instructor copy is untouched


def test_the_checker_reports_a_stub_as_not_written(capsys):
    saved = dict(EXERCISES)
    try:
        register(Exercise("toy_iou", "per-class IoU", lambda m: m.diag() / (m.sum(0) + m.sum(1) - m.diag()),
                          lambda rng: [("eye", (__import__("torch").eye(3),))], hint="TP / (TP + FP + FN)"))
        namespace = {}
        exec(compile(stub_source(IOU_SOLUTION), "<stub>", "exec"), namespace)
        assert check("toy_iou", namespace["my_iou"]) is False
        assert "✏️  toy_iou: not written yet" in capsys.readouterr().out
        solved = {}
        exec(compile(IOU_SOLUTION, "<solution>", "exec"), solved)
        assert check("toy_iou", solved["my_iou"]) is True
    finally:
        EXERCISES.clear()
        EXERCISES.update(saved)


def test_segkit_student_command(tmp_path, capsys):
    src = tmp_path / "nbs"
    src.mkdir()
    nbformat.write(handmade_notebook(), src / "00_demo.ipynb")
    assert cli_main(["student", "--src", str(src), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "notebooks" / "00_demo.ipynb").is_file()
    assert f"wrote 1 student notebook(s) to {tmp_path / 'out' / 'notebooks'}" in capsys.readouterr().out
    assert cli_main(["student", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no notebooks (*.ipynb) in" in capsys.readouterr().err
