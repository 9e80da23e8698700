"""segkit.course.execute: a notebook in its own kernel, with the size, the temporary folder and the limits it
is given. One small hand-made notebook; the course notebooks themselves run in test_notebooks_run.py."""

from __future__ import annotations

import nbformat

from segkit.course.execute import execute_notebook


def notebook(*sources: str):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


def test_size_tmpdir_leftovers_errors_and_outputs():
    run = execute_notebook(notebook(
        "import os, tempfile\nprint(os.environ['SEGKIT_SIZE'], 'SEGKIT_QUICK' in os.environ)",
        "open(os.path.join(tempfile.gettempdir(), 'left.bin'), 'wb').write(b'x' * 1234)",
        "raise ValueError('on purpose')",
        "print('after the error')",
    ), size="class", stop_on_error=False)  # fmt: skip
    assert run.notebook.cells[0].outputs[0]["text"] == "class False\n"
    assert (run.leftover_bytes, run.leftover_files) == (1234, ["left.bin"])
    assert [(error.index, error.kind, error.message) for error in run.errors] == [
        (2, "error", "ValueError: on purpose")]  # fmt: skip
    assert run.notebook.cells[3].outputs[0]["text"] == "after the error\n"


def test_stop_on_error_and_the_notebook_time_limit():
    stopped = execute_notebook(notebook("1 / 0", "print('never')"))
    assert [(error.index, error.kind) for error in stopped.errors] == [(0, "error")]
    assert stopped.notebook.cells[1].outputs == []  # stopped at the error: the next cell never ran
    slow = execute_notebook(notebook("import time\ntime.sleep(60)", "print('never')"),
                            timeout=4, stop_on_error=False, extra_cells=["print('extra runs anyway')"])
    assert [error.kind for error in slow.errors] == ["timeout", "timeout"]
    assert slow.errors[0].message == "timed out after 4 s (interrupted)"
    assert slow.notebook.cells[2].outputs[0]["text"] == "extra runs anyway\n"
