"""A fake deploy target for unit tests of the operations' decisions: an Executor whose
commands are answered from recorded outputs instead of a host.

Each command is known by a short key (the script name of `sh -c SCRIPT NAME ...`,
`compose <subcommand>`, `docker <subcommand>`, or argv[0]); a test gives an answer per key
(a (status, stdout) pair, or a function of the argv returning one) and reads back the keys
in the order they ran. A command nobody answered fails the test: the fake is strict.
"""

from __future__ import annotations

from collections.abc import Callable

import invoke

from tasks.errors import CommandFailed
from tasks.runner.executor import Executor, Guard, Redactor, Result

Answer = tuple[int, str] | Callable[[list[str]], tuple[int, str]]


def key_of(argv: list[str]) -> str:
    if argv[:2] == ["sh", "-c"] and len(argv) > 3:
        return argv[3]
    if argv[:2] == ["docker", "compose"]:
        return "compose " + argv[argv.index("--env-file") + 2]
    if argv[0] == "docker":
        return f"docker {argv[1]}"
    return argv[0]


class FakeTarget(Executor):
    def __init__(self, answers: dict[str, Answer]):
        super().__init__(invoke.Context(), Redactor(), 600, "fake-host")
        self.answers = dict(answers)
        self.calls: list[str] = []
        self.argvs: list[list[str]] = []
        self.fed: list[bytes] = []

    def _answer(self, argv) -> Result:
        key = key_of(list(argv))
        self.calls.append(key)
        self.argvs.append(list(argv))
        if key not in self.answers:
            raise AssertionError(f"the fake target has no answer for {key!r}: {list(argv)[:6]}")
        answer = self.answers[key]
        status, out = answer(list(argv)) if callable(answer) else answer
        return Result(tuple(argv), status, out, "", 0.0)

    def run(self, argv, *, timeout=None, check=True, stdin=None, cwd=None) -> Result:
        self._command(argv)  # the real vetting: quoting, no secret in argv
        result = self._answer(argv)
        if check and not result.ok:
            raise CommandFailed(f"fake-host: `{key_of(list(argv))}` exited with {result.exit_status}", exit_status=1)
        return result

    def feed(self, argv, data: bytes, *, timeout=None, check=True) -> Result:
        self.fed.append(data)
        return self.run(argv, check=check)

    def spawn_guard(self) -> Guard:
        self.calls.append("guard")
        self.argvs.append(["(guard)"])
        return Guard(4242, lambda: None)

    def before(self, key: str) -> list[str]:
        return self.calls[: self.calls.index(key)]
