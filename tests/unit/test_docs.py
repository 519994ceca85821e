"""The docs say what exists: tasks, variables, exit codes, links and the CI command.

Rules (also in docs/design.md, "Documentation rules"):

- A task name (`app.deploy`, `infra.apply`, `app.backup-download`, ...) written anywhere in
  README.md or docs/**/*.md, prose or code block, must exist in the Invoke collection
  (what `invoke --list --list-format json` prints), unless the same line contains the word
  "planned", or the line is in a planned section: from a line starting
  `> Status: planned (issue N)` to the next heading. Nothing else exempts a name.
- Every `TORRUST_*` variable named there must be in .env.example (the tracker's own
  `TORRUST_TRACKER_CONFIG_*` variables and the tool's own switches such as
  `TORRUST_VERBOSE` excepted).
- Every relative link must resolve to a file or directory (anchors are not checked).
- Every `--flag` written right after a task name (`app.deploy --dry-run`, in the same code
  span, table cell or command line) is a flag of that task.
- Every exit code named in prose ("exit 31", "exits with 68", "exit codes 63-67") or in
  the first column of a table headed "Code" or "Exit" is a code of `ExitCode` (or 130,
  Ctrl-C).
- Measured numbers have one home, docs/benchmarks.md: a ratio such as `0.39x` appears
  elsewhere only as a target (after <, <=, >, >=, ≤ or ≥), and no document counts tests
  ("252 unit tests"): counts and timings drift the day they are written.
"""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path

import pytest
import yaml

from tasks.config.envfile import reference_markdown
from tasks.config.settings import TOOL_SWITCHES
from tasks.errors import ExitCode
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").rglob("*.md"))
DOC_FILES = [ROOT / "README.md", *DOCS]
EXAMPLES = sorted((ROOT / "docs/examples").glob("*.yml"))
# A task name: namespace, a dot, a dashed lowercase name. Not when part of a longer dotted
# or path-like word (tracker.test.local, tasks/cli/app.py) or a file name (app.py).
TASK_RE = re.compile(
    r"(?<![\w./-])((?:app|infra|health|test)\."
    r"(?!(?:py|md|json|ya?ml|toml|j2|sh)\b)"
    r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?![\w/])"
)
VAR_RE = re.compile(r"\bTORRUST_[A-Z0-9_]+\b")
LINK_RE = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
ENV_EXAMPLE = set(re.findall(r"^(TORRUST_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))


def collection_task_names() -> set[str]:
    """The tasks `invoke --list --list-format json` prints, computed in-process (same data)."""
    from tasks import ns

    def walk(coll: dict, prefix: str) -> set[str]:
        names = {prefix + t["name"] for t in coll["tasks"]}
        for sub in coll["collections"]:
            names |= walk(sub, f"{prefix}{sub['name']}.")
        return names

    return walk(ns.serialized(), "")


@pytest.fixture(scope="module")
def task_names() -> set[str]:
    return collection_task_names()


PLANNED_MARKER = re.compile(r"^> Status: planned \(issue \d+\)")


def unknown_tasks(text: str, known: set[str]) -> list[tuple[int, set[str], str]]:
    """(line number, unknown names, line) for each line naming a missing task, unless the
    line says "planned" or lies in a planned section: from a `> Status: planned (issue N)`
    line to the next heading (outside code blocks)."""
    problems = []
    in_code = in_planned = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            in_planned = False
        elif PLANNED_MARKER.match(line):
            in_planned = True
        missing = set(TASK_RE.findall(line)) - known
        if missing and not in_planned and "planned" not in line.lower():
            problems.append((number, missing, line))
    return problems


def unknown_variables(text: str) -> set[str]:
    return (
        {v for v in VAR_RE.findall(text) if not v.startswith("TORRUST_TRACKER_CONFIG_")} - ENV_EXAMPLE - TOOL_SWITCHES
    )


def broken_links(path: Path, text: str) -> list[str]:
    targets = [t for t in LINK_RE.findall(text) if "://" not in t and not t.startswith("mailto:")]
    return [t for t in targets if not (path.parent / t).exists()]


def test_all_four_namespaces_exist(task_names):
    assert {n.split(".")[0] for n in task_names} == {"app", "infra", "health", "test"}


def test_the_readme_names_every_existing_task(task_names):
    assert task_names <= set(TASK_RE.findall(README)), task_names - set(TASK_RE.findall(README))


def test_tasks_marked_existing_in_the_migration_table_exist(task_names):
    text = (ROOT / "docs/makefile-migration.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("|") and "**exists**" in ln]
    assert len(rows) >= 10
    for row in rows:
        replacement = row.split("|")[2]
        for name in TASK_RE.findall(replacement):
            assert name in task_names, row


def test_every_task_has_a_summary_and_flag_help(task_names):
    from tasks import ns

    for name in sorted(task_names):
        task = ns[name]
        assert (task.__doc__ or "").strip(), f"{name}: no summary"
        for arg in task.get_arguments():
            assert arg.help, f"{name}: --{arg.name} has no help"


def test_readme_configuration_reference_is_current():
    section = README.split("<!-- config-reference:start (generated from tasks/config/variables.py) -->\n")[1]
    assert section.split("<!-- config-reference:end -->")[0] == reference_markdown()


def test_ci_runs_the_readme_test_command():
    block = README.split("```sh\n")[1].split("```")[0]
    test_command = block.splitlines()[1].split("#")[0].strip()
    assert test_command == "./tasks.py test.all"
    ci = (ROOT / ".ci/run").read_text()
    assert "\n" + test_command + "\n" in ci


def test_exit_codes_are_documented():
    text = (ROOT / "docs/guides/exit-codes.md").read_text()
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \| {code.name} \|", text, re.M), code


def test_the_checkers_can_fail(task_names):
    text = "run `app.no-such-task`\n`infra.no-such-task` (planned, issue 6)\n./tasks.py test.nope --x\n"
    assert [(n, m) for n, m, _ in unknown_tasks(text, task_names)] == [(1, {"app.no-such-task"}), (3, {"test.nope"})]
    section = (
        "## A\n> Status: planned (issue 5)\n\n`app.gone`\n"
        "```sh\n# comment\n./tasks.py app.gone2\n```\n## B\n`app.gone3`\n"
    )
    assert [(n, m) for n, m, _ in unknown_tasks(section, task_names)] == [(10, {"app.gone3"})]
    assert unknown_tasks("tracker.test.local tasks/cli/app.py app.py `app.deploy`", task_names) == []
    assert TASK_RE.findall("`app.backup-download --id X`; health.check.") == ["app.backup-download", "health.check"]
    assert unknown_variables("TORRUST_NOT_A_VARIABLE and TORRUST_DOMAIN") == {"TORRUST_NOT_A_VARIABLE"}
    assert broken_links(ROOT / "docs/x.md", "[a](missing.md) [b](guides/exit-codes.md#codes) [c](https://x.org/y)") == [
        "missing.md"
    ]


def test_the_task_list_is_the_one_invoke_prints(task_names):
    from tasks import ns

    assert task_names == set(ns.task_names), "nested collections or aliases changed: update collection_task_names"


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_tasks_named_in_docs_exist_or_are_marked_planned(path, task_names):
    problems = unknown_tasks(path.read_text(), task_names)
    where = path.relative_to(ROOT)
    assert not problems, "\n".join(f"{where}:{n}: {sorted(m)} not a task: {ln}" for n, m, ln in problems)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_variables_named_in_docs_are_in_env_example(path):
    assert not unknown_variables(path.read_text()), f"{path.relative_to(ROOT)}: not in .env.example"


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert not broken_links(path, path.read_text()), f"{path.relative_to(ROOT)}: broken links"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_workflows_parse_name_real_tasks_and_keep_secrets_off_command_lines(path, task_names):
    text = path.read_text()
    workflow = yaml.safe_load(text)
    assert workflow["jobs"], path
    assert not unknown_tasks(text, task_names), path
    assert not unknown_variables(text), path
    for job in workflow["jobs"].values():
        for stp in job["steps"]:
            assert "secrets." not in stp.get("run", ""), f"{path.name}: a secret on a command line: {stp['run']}"


def test_there_is_an_example_workflow():
    assert EXAMPLES


def test_the_ci_example_carries_every_setting_production_has():
    """Issue #15: a CI deploy that leaves out a production setting (Grafana, backups, IPv6)
    would remove it; the example's committed settings file sets every one app.config sets
    for a non-local environment, and the workflow copies it."""
    from tasks.config.variables import VARIABLES

    prod = (ROOT / "docs/examples/prod.env").read_text()
    names = {ln.split("=", 1)[0] for ln in prod.splitlines() if "=" in ln and not ln.startswith("#")}
    assert {v.name for v in VARIABLES if v.production is not None} <= names
    assert not {v.name for v in VARIABLES if v.secret} & names  # secrets come from the CI secret store
    workflow = (ROOT / "docs/examples/github-actions-deploy.yml").read_text()
    assert "cp deploy/prod.env .env.prod" in workflow
    for v in VARIABLES:
        if v.generated:  # the stack's own secrets (watch's webhook and SMTP password are optional)
            assert f"{v.name}: ${{{{ secrets.{v.name} }}}}" in workflow, v.name


# ------------------------------------------------------------------ flags, exit codes, numbers
# A command after a task name: up to the end of its code span, table cell or line.
COMMAND_RE = re.compile(TASK_RE.pattern + r"([^`|\n#;]*)")
FLAG_RE = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
EXIT_RE = re.compile(r"\bexit(?:s| with| code| codes|s with)?\s+(\d+)(?:\s*-\s*(\d+))?", re.I)
RATIO_RE = re.compile(r"(?P<before>.{0,10})\b(?P<ratio>\d+\.\d+x)\b")
TARGET_RE = re.compile(r"(<|>|=|≤|≥|at most|at least|target)\s*$")
QUOTED_RE = re.compile(r"'[^']*'|\"[^\"]*\"")
TEST_COUNT_RE = re.compile(r"\b\d[\d,]* (?:unit |integration |e2e )?tests\b(?! (?:on|of|for|in) )")
CODES = {int(c) for c in ExitCode} | {130}


def task_flags(task: str) -> set[str]:
    """The long flags of a task (from a copy: Invoke's get_arguments() pops the help texts)."""
    from tasks import ns

    clone = copy.copy(ns[task])
    clone.help = dict(ns[task].help)
    return {n for a in clone.get_arguments() for n in a.names if len(n) > 1} | {"help"}


def unknown_flags(text: str, known_tasks: set[str]) -> list[tuple[int, str, str]]:
    """(line number, task, flag) for each flag written after a task that it does not take."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        starts = [m.start() for m in TASK_RE.finditer(line)] + [len(line)]
        for start, end in itertools.pairwise(starts):
            m = COMMAND_RE.match(line, start, end)
            if m is None or m.group(1) not in known_tasks:
                continue
            task, rest = m.group(1), QUOTED_RE.sub("", m.group(2))
            flags = task_flags(task)
            problems += [(number, task, f) for f in FLAG_RE.findall(rest) if f not in flags]
    return problems


def unknown_exit_codes(text: str) -> list[tuple[int, int]]:
    problems = []
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        for first, last in EXIT_RE.findall(line):
            for code in {int(first), int(last or first)}:
                if code not in CODES:
                    problems.append((number, code))
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if cells and cells[0] in ("Code", "Exit"):
            in_table = True
        elif not cells:
            in_table = False
        elif in_table and cells[0] and not cells[0].startswith("-"):
            problems += [(number, int(c)) for c in re.findall(r"\d+", cells[0]) if int(c) not in CODES]
    return problems


def measured_numbers(text: str) -> list[tuple[int, str]]:
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        for m in RATIO_RE.finditer(line):
            if not TARGET_RE.search(m.group("before")):
                problems.append((number, m.group("ratio")))
        problems += [(number, m.group(0)) for m in TEST_COUNT_RE.finditer(line)]
    return problems


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_flags_written_after_a_task_are_its_flags(path, task_names):
    problems = unknown_flags(path.read_text(), task_names)
    where = path.relative_to(ROOT)
    assert not problems, "\n".join(f"{where}:{n}: {task} has no --{flag}" for n, task, flag in problems)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_exit_codes_named_in_prose_exist(path):
    assert not unknown_exit_codes(path.read_text()), f"{path.relative_to(ROOT)}: {unknown_exit_codes(path.read_text())}"


@pytest.mark.parametrize(
    "path", [p for p in DOC_FILES if p.name != "benchmarks.md"], ids=lambda p: str(p.relative_to(ROOT))
)
def test_measured_numbers_live_only_in_benchmarks(path):
    found = measured_numbers(path.read_text())
    assert not found, f"{path.relative_to(ROOT)}: measured numbers belong in docs/benchmarks.md (link it): {found}"


def test_the_deeper_checkers_can_fail(task_names):
    text = "`app.deploy --dry-run --no-such-flag`\n./tasks.py infra.wait --env x --accept-new-host-key --fleet f\n"
    assert unknown_flags(text, task_names) == [(1, "app.deploy", "no-such-flag"), (2, "infra.wait", "fleet")]
    assert unknown_flags("`app.deploy` with `--fleet` and `health.check --only network` | --x", task_names) == []
    assert (
        unknown_flags("app.rollback --with-data restores it. app.deploy --no-upgrade-backup skips it", task_names) == []
    )
    assert unknown_flags("app.exec --service mysql --command 'mysql --version'", task_names) == []
    assert unknown_exit_codes("fails with exit 31; exit codes 63-67; it exits 99\n") == [(1, 99)]
    assert unknown_exit_codes("| Code | Meaning |\n|---|---|\n| 10, 11, 12 | x |\n| 77 | y |\n\nexit 0") == [(4, 77)]
    assert measured_numbers("no-op 0.39x of raw; target <= 0.5x, ≤ 1.3x, at most 0.5x; 252 unit tests ran") == [
        (1, "0.39x"),
        (1, "252 unit tests"),
    ]
