"""The README a newcomer meets: short, with the two commands on its first screen."""

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_is_short_and_its_first_screen_gives_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines: move reference parts to docs/"
    first_screen = "\n".join(lines[:45])
    assert "make generate" in first_screen and "make test" in first_screen
    assert "reports/README.md" in README.read_text()  # the results page, where the numbers live
