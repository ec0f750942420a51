"""Every ``reds-jax ...`` command line in README.md and the documentation (docs/**/*.md) parses
with the parser of the command it names (parsed only, never run), so the guides say only what
today's command line accepts."""

import contextlib
import importlib
import importlib.util
import io
import pathlib
import re
import shlex

import pytest

from reds_jax.jobs import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHELL = ("", "bash", "sh", "shell", "console")  # program output is in ```text blocks
# a command may follow a launcher on the same line (srun, ssh HOST) or open the line
COMMAND = re.compile(r"(?:^|\s)(reds-jax\s.*|reds-jax$)")


def _documents() -> list[pathlib.Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def shell_blocks(text: str) -> list[str]:
    """The contents of the shell code blocks (```bash, or no language) of Markdown ``text``."""
    blocks, lines, language = [], None, ""
    for line in text.splitlines():
        fence = line.strip().startswith("```")
        if fence and lines is None:
            lines, language = [], line.strip()[3:].strip()
        elif fence:
            if language in SHELL:
                blocks.append("\n".join(lines))
            lines = None
        elif lines is not None:
            lines.append(line)
    return blocks


def command_lines(text: str) -> list[str]:
    """The ``reds-jax`` command lines of the shell code blocks of ``text`` (continuation lines
    joined, comments and the shell variable of a loop dropped)."""
    found = []
    for block in shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            match = COMMAND.search(line.strip())
            if match:
                words = shlex.split(match.group(1).replace("$i", "0"), comments=True)
                words = words[: words.index("&")] if "&" in words else words
                found.append(shlex.join(words))
    return found


def _parser(argv: list[str]):
    """The jax-free parser of the command ``argv`` names, and the arguments it parses."""
    if argv[:1] == ["bench"]:
        script = ROOT / "benchmarks" / "bench_traverse_args.py"
        spec = importlib.util.spec_from_file_location("bench_traverse_args", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.parser("reds-jax bench"), argv[1:]
    name = " ".join(argv[:2]) if argv[:1] == ["convert"] else argv[0]
    if name in cli._DELEGATED:
        args = argv[len(name.split()) :]
        return importlib.import_module(cli._DELEGATED[name][0]).parser(f"reds-jax {name}"), args
    return cli._parser(), argv


LINES = [(doc, line) for doc in _documents() for line in command_lines(doc.read_text())]


def test_the_documents_have_command_lines():
    names = {shlex.split(line)[1] for _, line in LINES}
    # every subcommand is shown somewhere, so this test covers each parser
    assert {"demo", "traverse", "augment", "invert", "convert", "app", "evaluate", "bench"} <= names


@pytest.mark.parametrize(
    "doc, line", LINES, ids=[f"{d.relative_to(ROOT)}:{ln[9:40]}" for d, ln in LINES]
)
def test_command_line_parses(doc, line):
    argv = [a for a in shlex.split(line)[1:] if a != "--debug"]
    parser, args = _parser(argv)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(args)
    except SystemExit as exit_:
        pytest.fail(
            f"{doc.relative_to(ROOT)}: {line!r} does not parse ({exit_.code}): {err.getvalue()}"
        )


def test_a_wrong_flag_is_caught():
    # the check itself: a misspelt flag in a document would fail it
    (line,) = command_lines(
        "```bash\nreds-jax traverse --model rooms --stepsize 0.3  # typo\n```\n"
    )
    parser, args = _parser(shlex.split(line)[1:])
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        parser.parse_args(args)
