"""Every task's --json document has a JSON Schema (docs/schemas/TASK.json), and the
documents the real code prints validate against it (docs/json-output.md).

Documents checked here are produced by the tasks themselves, run in-process: the error
document of every task (an environment name no task accepts), the results of the tasks
that need no host (app.config, app.settings, app.render, infra.providers,
infra.environments, health.endpoints), and a deploy's outcome against the strict fake
target of the operations tests. The schemas are validated with jsonschema (Draft 2020-12).
"""

from __future__ import annotations

import copy
import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from invoke import Context
from invoke.exceptions import Exit
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tasks import ns
from tasks.errors import ExitCode
from tests.conftest import ROOT

SCHEMAS = ROOT / "docs" / "schemas"


def arguments(task) -> list:
    """A task's arguments without side effects (Invoke's get_arguments() pops the help
    texts, so a second call would find none)."""
    clone = copy.copy(task)
    clone.help = dict(task.help)
    return clone.get_arguments()


JSON_TASKS = sorted(n for n in ns.task_names if any(a.name == "json" for a in arguments(ns[n])))


def registry() -> Registry:
    resources = [(p.name, Resource.from_contents(json.loads(p.read_text()))) for p in SCHEMAS.glob("*.json")]
    return Registry().with_resources(resources)


def validator(task: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{task}.json").read_text())
    return Draft202012Validator(schema, registry=registry())


def errors(task: str, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(task).iter_errors(doc)]


def run_json(task: str, **kwargs) -> tuple[int, dict]:
    """Run a task in-process with --json: (its exit code, the one document it printed)."""
    out = io.StringIO()
    code = 0
    with redirect_stdout(out):
        try:
            ns[task](Context(), json=True, **kwargs)
        except Exit as exc:
            code = exc.code
    return code, json.loads(out.getvalue())


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """An empty checkout directory as the working directory (the settings root), with no
    TORRUST_* variable from this process leaking in."""
    for key in [k for k in __import__("os").environ if k.startswith("TORRUST_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CI", "true")
    return tmp_path


def test_every_task_with_json_has_a_schema_and_every_schema_a_task():
    files = {p.stem for p in SCHEMAS.glob("*.json")} - {"common"}
    assert files == set(JSON_TASKS), set(JSON_TASKS) ^ files
    assert len(JSON_TASKS) >= 40


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.name)
def test_each_schema_is_a_valid_draft_2020_12_schema(path):
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == path.name


def test_the_json_output_page_lists_every_schema():
    text = (ROOT / "docs" / "json-output.md").read_text()
    linked = set(re.findall(r"\(schemas/([a-z.-]+\.json)\)", text))
    assert linked == {p.name for p in SCHEMAS.glob("*.json")}


def test_the_schemas_can_fail():
    bad_error = {"ok": False, "error": "ConfigError", "code": "two", "message": "x", "hint": None}
    assert errors("app.settings", bad_error)
    assert errors("app.render", {"ok": True, "env": "local", "path": "/x", "content_sha256": "nothex", "files": []})
    assert errors("app.deploy", {"ok": True, "status": "exploded", "release": "r"})


@pytest.mark.parametrize("task", JSON_TASKS)
def test_the_error_document_of_every_task_matches_its_schema(task, checkout):
    kwargs = {"env": "Not A Name"} if any(a.name == "env" for a in arguments(ns[task])) else {}
    if not kwargs:
        pytest.skip(f"{task} takes no environment: it has no bad input to give here")
    code, doc = run_json(task, **kwargs)
    assert code == ExitCode.CONFIG and doc["ok"] is False and doc["code"] == 2, doc
    assert not errors(task, doc), errors(task, doc)


def test_documents_of_the_tasks_that_need_no_host(checkout):
    produced = {
        "app.config": run_json("app.config", env="prod"),
        "app.settings": run_json("app.settings", env="local"),
        "app.render": run_json("app.render", env="local", out=str(checkout / "release")),
        "infra.providers": run_json("infra.providers"),
        "infra.environments": run_json("infra.environments"),
        "health.endpoints": run_json("health.endpoints", env="local"),
    }
    for task, (code, doc) in produced.items():
        assert code == 0, (task, doc)
        assert doc["ok"] is True, (task, doc)
        assert not errors(task, doc), (task, errors(task, doc))
    assert Path(produced["app.config"][1]["path"]).name == ".env.prod"


def test_a_deploys_outcome_matches_the_deploy_schema(workdir):
    from tasks.config.settings import load
    from tasks.operations import deploy as d
    from tasks.release import render as r
    from tests.unit.operations.fake_target import FakeTarget
    from tests.unit.operations.test_deploy import RECORDED_STACK, RUNNING, answers, opts, step

    settings = load("local", root=workdir, environ=RECORDED_STACK)
    out = d.deploy(FakeTarget(answers(RUNNING)), settings, d.Candidate.of(r.render(settings)), opts(), step)
    doc = json.loads(json.dumps(out.as_dict(), default=str))
    assert doc["status"] == "deployed"
    assert not errors("app.deploy", doc), errors("app.deploy", doc)
