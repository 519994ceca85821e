"""Torrust Tracker deployment tasks: the `infra`, `app`, `health` and `test` namespaces.

Invoke loads this package (`invoke --list` from the repository root); `./tasks.py` is
the launcher that creates the virtual environment first. Tasks are thin: they parse
flags, load settings and call one plain function below `cli/` (docs/design.md, module map).
"""

from invoke import Collection

from tasks.cli import app, backups, health, infra, operate, rotate, test
from tasks.cli.boundary import VERBOSE_HELP


def _namespace(name: str, *modules) -> Collection:
    collection = Collection(name)
    for module in modules:
        for task in Collection.from_module(module).tasks.values():
            collection.add_task(task)
    return collection


ns = Collection()
ns.add_collection(_namespace("infra", infra))
ns.add_collection(_namespace("app", app, operate, backups, rotate))
ns.add_collection(_namespace("health", health))
ns.add_collection(_namespace("test", test))
for _collection in ns.collections.values():
    for _task in _collection.tasks.values():
        if "verbose" in _task.argspec(_task.body).parameters:
            _task.help.setdefault("verbose", VERBOSE_HELP)
