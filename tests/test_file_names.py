"""The stages' file names are declared once, in components/lib/data/contract.py (labels.json in
labels.py, MANIFEST.json in artifacts.py): no module of components/ or pipelines/ retypes one."""

import ast
from pathlib import Path

from components.lib.data import contract, labels
from components.lib.storage import artifacts

REPO = Path(__file__).resolve().parent.parent
DECLARED_IN = {Path(module.__file__).resolve() for module in (contract, labels, artifacts)}


def declared_names() -> dict[str, str]:
    """{file name: constant} for every file name the contract declares (folder names such as
    "tokenizer" are left out: they are also plain words)."""
    names = {labels.LABELS_FILE: "LABELS_FILE", artifacts.MANIFEST: "MANIFEST"}
    for constant, value in vars(contract).items():
        if constant.endswith(("_FILE", "_PICTURE")) and isinstance(value, str):
            names[value] = constant
    return names


def retyped(path: Path, names: dict[str, str]) -> list[str]:
    return [
        f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r} is {names[node.value]}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
    ]


def test_no_module_retypes_a_file_name_the_contract_declares():
    names = declared_names()
    assert {"metrics.json", "model.onnx", "train_summary.json", "confusion_matrix.png", "MODEL_CARD.md"} <= set(names)
    modules = [path for folder in ("components", "pipelines") for path in sorted((REPO / folder).rglob("*.py"))]
    found = [line for path in modules if path.resolve() not in DECLARED_IN for line in retyped(path, names)]
    assert found == [], "import these from components/lib/data/contract.py:\n" + "\n".join(found)
