"""README.md's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_example_runs(index: int, capsys) -> None:
    namespace: dict = {"__name__": f"readme_example_{index}"}
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), namespace)
    if "logits" in namespace:
        assert tuple(namespace["logits"].shape) == (2, 10)
    if "fast" in namespace:  # "plain convs for inference, same outputs"
        import torch

        clip = torch.randn(1, 3, 4, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(
                namespace["fast"](clip), namespace["gnws"].eval()(clip), rtol=0, atol=1e-5
            )
    if "report" in namespace:  # "3x3 -> 3x3x3 etc.; the 1000-class fc is skipped"
        report = namespace["report"]
        assert len(report.inflated) == 53 and any(key.startswith("fc.weight") for key in report.skipped)
        assert "53 conv kernels inflated" in str(report)
    out = capsys.readouterr().out
    assert out  # every example prints what it shows
    # A printed list shown in a comment as "# ['a', 'b', ...]" is what the code really prints (up to the "...").
    for shown in re.findall(r"print\(.*?\)\s*# (\[.*?), \.\.\.\]", BLOCKS[index]):
        assert shown in out, (shown, out)
