"""The README a newcomer meets: short, with the two commands on its first screen."""

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_is_short_and_its_first_screen_gives_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines: move reference parts to docs/"
    first_screen = "\n".join(lines[:45])
    assert "make generate" in first_screen and "make test" in first_screen
    assert "reports/README.md" in README.read_text()  # the results page, where the numbers live


def test_the_readmes_python_snippet_runs_as_written():
    """The quick-start snippet (a plain ``python`` block; the ``>>>`` blocks run as doctests)."""
    import re

    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if ">>>" not in b]
    assert blocks, "the README has no quick-start Python snippet"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    image = namespace["image"]
    assert image.mode == "RGB" and image.size == (256, 256)  # the bundled cascade's default, as the README says
