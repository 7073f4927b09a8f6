"""The documentation holds together: the README is a short front door that
starts with the two commands CI runs, every page under docs/ is reachable
from it, every Markdown link resolves (files exist, #anchors name a heading
of their page, by GitHub's rule), and every command and option that
`--help` shows is described where a reader of that command looks (its
section of docs/GUIDE.md, the options every tracing command shares, or the
page the guide sends it to). Built from cli.build_parser(), so a new option
without documentation fails here."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from ioltrace import cli

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
README = REPO / "README.md"
README_MAX_BYTES = 12_000          # "12 KB": a page read in ten minutes
PAGES = [README, *sorted(DOCS.glob("*.md"))]

# Commands whose options are described on a page of their own, beside their
# section of the guide.
OWN_PAGE = {"serve": "PROMETHEUS.md"}
SHARED_SECTION = "Options every tracing command takes"

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)")


def prose(text):
    """Text without fenced blocks and inline code: where links and headings live."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens
    and underscores kept), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            out.add(s if n == 0 else f"{s}-{n}")
            seen[s] = n + 1
    return out


def links():
    for page in PAGES:
        for text, target in LINK.findall(prose(page.read_text())):
            yield page, text, target


def test_the_pages_have_links_to_check():
    assert len(PAGES) >= 10 and sum(1 for _ in links()) >= 20


@pytest.mark.parametrize("page,text,target", list(links()),
                         ids=lambda v: v.name if isinstance(v, Path) else str(v))
def test_every_link_resolves(page, text, target):
    if re.match(r"[a-z]+:", target):         # http:, https:, mailto:: not checked offline
        return
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.name}: [{text}]({target}): no file {dest}"
    assert REPO in dest.parents or dest == REPO, f"{page.name}: [{text}]({target}) leaves the repository"
    if anchor:
        assert dest.suffix == ".md", f"{page.name}: [{text}]({target}): an anchor into a non-Markdown file"
        assert anchor in anchors(dest), \
            f"{page.name}: [{text}]({target}): no heading with anchor #{anchor} in {dest.name}"


def test_the_anchor_rule_is_githubs():
    assert slug("JSON lines (`--json`)") == "json-lines---json"
    assert slug("Event-loop latency: `ioltrace loop`") == "event-loop-latency-ioltrace-loop"
    assert slug("How compare decides") == "how-compare-decides"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve()
              for p, _, t in links() if p == README and t.partition("#")[0]}
    missing = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail to docs/ (limit {README_MAX_BYTES})"


def test_readme_starts_with_the_two_commands_ci_runs():
    text = README.read_text()
    first_block = re.search(r"^```sh\n(.*?)^```", text, re.S | re.M)
    assert first_block, "README has a sh block"
    assert "\n## " not in text[:first_block.start()], "the commands come before the first section"
    commands = [line.split("#", 1)[0].strip() for line in first_block.group(1).splitlines()]
    commands = [c for c in commands if c]
    assert len(commands) == 2, commands
    setup, test = (shlex.split(c.replace("&&", " && ")) for c in commands)
    # The first sets up and runs the demo; the second is the test command,
    # the very script CI's entry point runs.
    assert any(w.endswith("scripts/setup.sh") for w in setup) and "&&" in setup, setup
    assert "demo" in setup[setup.index("&&"):] and any(w.endswith("ioltrace") for w in setup), setup
    script = next(w for w in test if w.startswith("scripts/"))
    assert script == "scripts/test.sh" and (REPO / script).is_file(), test
    assert re.search(r"^exec bash scripts/test\.sh\b", (REPO / ".ci" / "run").read_text(), re.M)


def subcommands():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


def documented_options(parser):
    """Option strings --help shows (not -h, not the ones kept only to be refused)."""
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        yield from action.option_strings


def sections(path):
    """(heading, body) of each section of a page, a section running to the
    next heading of the same or a higher level."""
    text = FENCE.sub(lambda m: m.group(0).replace("#", ""), path.read_text())   # keep code, drop its '#'
    heads = [(m.start(), len(m.group(1)), m.group(2)) for m in re.finditer(r"^(#{1,6})\s+(.*)$", text, re.M)]
    for i, (start, level, title) in enumerate(heads):
        end = next((s for s, lv, _ in heads[i + 1:] if lv <= level), len(text))
        yield title, text[start:end]


def where_described(command):
    """The guide's sections titled with the command, the shared options'
    section for a tracing command (one with the kernel filters), and the
    command's own page."""
    guide = dict(sections(DOCS / "GUIDE.md"))
    own = [body for title, body in guide.items() if re.search(rf"`(ioltrace )?{command}`", title)]
    assert own, f"docs/GUIDE.md has no section titled with `{command}`"
    text = "\n".join(own)
    if "--pid" in documented_options(subcommands()[1][command]):
        assert SHARED_SECTION in guide, f"docs/GUIDE.md has no section {SHARED_SECTION!r}"
        text += guide[SHARED_SECTION]
    if command in OWN_PAGE:
        text += (DOCS / OWN_PAGE[command]).read_text()
    return text


def mentioned(option, text):
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_every_command_is_in_the_readme_and_the_guide():
    _, commands = subcommands()
    readme = README.read_text()
    assert len(commands) >= 10
    for name in commands:
        assert f"ioltrace {name}" in readme, f"README does not show `ioltrace {name}`"
        where_described(name)


@pytest.mark.parametrize("command", list(subcommands()[1]))
def test_every_option_of_a_command_is_described_with_it(command):
    parser = subcommands()[1][command]
    text = where_described(command)
    options = list(documented_options(parser))
    missing = [o for o in options if not mentioned(o, text)]
    assert not missing, f"`ioltrace {command}` options missing from its docs: {missing}"


def test_the_top_level_options_are_described():
    parser, _ = subcommands()
    text = (DOCS / "GUIDE.md").read_text()
    options = list(documented_options(parser))
    assert "--version" in options
    assert [o for o in options if not mentioned(o, text)] == []


def test_a_missing_option_would_be_found():
    """The check can fail: an option no page names is not 'mentioned'."""
    text = where_described("hist")
    assert mentioned("--stage", text) and not mentioned("--no-such-option", text)
    assert not mentioned("--layer", "--layers only")
