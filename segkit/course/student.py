"""Student copies of the course notebooks, generated from the instructor copies (never kept by hand).

    make student                  # or: segkit student [--out student]
    -> student/notebooks/NN_topic.ipynb

The notebooks in notebooks/ hold the solutions, so that the tests can run them top to bottom. A solution
lives in a code cell tagged `solution` (cell metadata {"tags": ["solution"]}). In the student copy:

- a solution cell keeps its imports and the header of every function and class it defines (decorators,
  the `def` line(s) with the signature, the docstring); each body becomes
  `raise NotImplementedError("Exercise: write this function — see the instructions above")`.
  A method of a class is stubbed the same way. Any other statement of the cell (an assignment, a call)
  is replaced by one `raise NotImplementedError(...)` at the end of the cell; a cell without a
  function becomes a comment and that line;
- every other cell is copied unchanged;
- all outputs and execution counts are cleared.

The check cell after an exercise (`check("name", my_fn)`) then reports "not written yet" instead of failing.
"""

from __future__ import annotations

import ast
import copy
import os
from pathlib import Path

import nbformat

SOLUTION_TAG = "solution"
FUNCTION_STUB = 'raise NotImplementedError("Exercise: write this function — see the instructions above")'
CELL_STUB = 'raise NotImplementedError("Exercise: write this cell — see the instructions above")'


def is_solution(cell) -> bool:
    return cell.get("cell_type") == "code" and SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def _docstring_node(node) -> ast.stmt | None:
    """The statement holding the docstring of a function or class, or None."""
    return node.body[0] if ast.get_docstring(node, clean=False) is not None else None


def _first_line(node) -> int:
    """1-based line where a statement starts, its decorators included."""
    decorators = getattr(node, "decorator_list", None)
    return decorators[0].lineno if decorators else node.lineno


def _header_lines(node, lines: list[str]) -> list[str]:
    """Source lines from the first decorator to the docstring (or the line before the body)."""
    start = _first_line(node) - 1
    docstring = _docstring_node(node)
    end = docstring.end_lineno if docstring is not None else node.body[0].lineno - 1
    if _body_on_header_line(node, lines):  # e.g. `def f(x): return x`: rebuild the header from the tree
        bare = copy.copy(node)
        bare.body = [ast.Pass()]
        indent = " " * node.col_offset
        return [indent + line for line in ast.unparse(bare).splitlines()[:-1]]
    header = lines[start:end]
    while docstring is None and (header[-1].strip().startswith("#") or not header[-1].strip()):
        header.pop()  # comments between the signature and the body belong to the solution
    return header


def _body_on_header_line(node, lines: list[str]) -> bool:
    """True when the body starts on the line that ends the signature (`def f(x): return x`)."""
    first = node.body[0]
    return bool(lines[first.lineno - 1][: first.col_offset].strip())


def _body_indent(node, lines: list[str]) -> str:
    body_start = node.body[0]
    if _body_on_header_line(node, lines):
        return " " * (node.col_offset + 4)
    line = lines[body_start.lineno - 1]
    return line[: len(line) - len(line.lstrip())]


def _stub_definition(node, lines: list[str]) -> list[str]:
    """A function: its header and a raising body. A class: its header and each method stubbed."""
    header = _header_lines(node, lines)
    indent = _body_indent(node, lines)
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return header + [indent + FUNCTION_STUB]
    methods = [item for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not methods:
        return header + [indent + CELL_STUB]
    out = list(header)
    for method in methods:
        if not out[-1].rstrip().endswith(":"):  # a blank line between members, not right after `class X:`
            out.append("")
        out += _stub_definition(method, lines)
    return out


def stub_source(source: str) -> str:
    """The student version of one solution cell's source (see the module docstring)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # e.g. an IPython magic: replace the whole cell
        tree = None
    if tree is None or not tree.body:
        return f"# Exercise: write this cell — see the instructions above.\n{CELL_STUB}\n"
    lines = source.splitlines()
    before_code = lines[: _first_line(tree.body[0]) - 1]
    opening_comments = [line for line in before_code if line.strip().startswith("#")]
    imports: list[str] = []
    definitions: list[list[str]] = []
    other_statements = False
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports += lines[node.lineno - 1 : node.end_lineno]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            definitions.append(_stub_definition(node, lines))
        else:
            other_statements = True
    blocks = [opening_comments + imports] if opening_comments or imports else []
    blocks += definitions
    if not definitions:
        blocks.append(["# Exercise: write this cell — see the instructions above.", CELL_STUB])
    elif other_statements:
        blocks.append([CELL_STUB])
    return "\n\n\n".join("\n".join(block) for block in blocks) + "\n"


def student_notebook(notebook):
    """A copy of `notebook` with solution cells stubbed and every output and execution count cleared."""
    student = copy.deepcopy(notebook)
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        if is_solution(cell):
            cell.source = stub_source(cell.source)
        cell.outputs = []
        cell.execution_count = None
    return student


def make_student(
    src_dir: str | os.PathLike = "notebooks", out_dir: str | os.PathLike = "student"
) -> list[Path]:
    """Write the student copy of every src_dir/*.ipynb to out_dir/notebooks/ and return the paths written.

    Counts the solution cells per notebook and prints one line each.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    sources = sorted(src_dir.glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {src_dir}")
    target_dir = out_dir / "notebooks"
    target_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        notebook = nbformat.read(source, as_version=4)
        solutions = sum(is_solution(cell) for cell in notebook.cells)
        target = target_dir / source.name
        nbformat.write(student_notebook(notebook), target)
        written.append(target)
        print(f"{target}: {solutions} solution cell(s) replaced by stubs")
    return written
