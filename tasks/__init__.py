"""Torrust Tracker deployment tasks: the `infra`, `app`, `health` and `test` namespaces.

Invoke loads this package (`invoke --list` from the repository root); `./tasks.py` is
the launcher that creates the virtual environment first. Tasks are thin: they parse
flags and call plain functions in `config`, `release`, `operations` and `runner`.
"""

from invoke import Collection

from tasks.cli import app, health, infra, test

ns = Collection()
ns.add_collection(Collection.from_module(infra, name="infra"))
ns.add_collection(Collection.from_module(app, name="app"))
ns.add_collection(Collection.from_module(health, name="health"))
ns.add_collection(Collection.from_module(test, name="test"))
