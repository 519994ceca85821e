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
"""

from __future__ import annotations

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
