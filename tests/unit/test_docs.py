"""The docs say what exists: tasks, variables, exit codes, links and the CI command."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tasks.config.envfile import reference_markdown
from tasks.config.variables import BY_NAME
from tasks.errors import ExitCode
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").rglob("*.md"))
TASK_RE = re.compile(r"`((?:app|infra|health|test)\.[a-z][a-z0-9-]*)")


@pytest.fixture(scope="module")
def task_names() -> set[str]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tasks.py"), "--list", "--list-format=json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    data = json.loads(out)
    names = set()
    for coll in data["collections"]:
        names |= {f"{coll['name']}.{t['name']}" for t in coll["tasks"]}
    return names


def test_all_four_namespaces_exist(task_names):
    assert {n.split(".")[0] for n in task_names} == {"app", "infra", "health", "test"}


def test_every_task_in_the_readme_exists(task_names):
    named = set(TASK_RE.findall(README))
    assert named and named <= task_names, named - task_names


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


def test_variables_named_in_docs_exist():
    for path in [ROOT / "README.md", *DOCS]:
        for name in set(re.findall(r"\bTORRUST_[A-Z0-9_]+\b", path.read_text())):
            if name.startswith("TORRUST_TRACKER_CONFIG"):
                continue
            assert name in BY_NAME, f"{path.name}: {name}"


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


def test_relative_links_resolve():
    for path in [ROOT / "README.md", *DOCS]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} -> {target}"


def test_tasks_named_anywhere_in_docs_exist_or_are_marked_planned(task_names):
    for path in [ROOT / "README.md", *DOCS]:
        for line in path.read_text().splitlines():
            missing = set(TASK_RE.findall(line)) - task_names
            assert not missing or "planned" in line.lower(), f"{path.relative_to(ROOT)}: {missing}: {line}"
