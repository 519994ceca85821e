"""Facts: what the tool learns from a host, each as a pair (pyinfra's way).

A fact module holds a command builder (the argv, from `tasks.commands`) and a pure
parser that turns the command's output into a typed value, or raises `MalformedFact`
(a named error, never a traceback) when the output is not what the command prints. A
`read(ex, ...)` function runs the pair through an executor. Parsers are unit-tested on
recorded outputs kept as files under tests/unit/facts/recorded/<fact>/ (empty, normal,
odd, hostile), so a parser bug shows in the fast suite, not only behind Docker.

Deploy, day-2, backup, health and infra read facts from here; none of them imports
another's helpers (docs/adr/0011-structure-facts-commands-settings.md).
"""
