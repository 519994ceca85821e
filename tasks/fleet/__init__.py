"""Fleets: several environments (one tracker host each) deployed and operated as one.

`declaration.py` reads and validates a fleet from `fleets.toml`; `rollout.py` runs one
function per host in a bounded thread pool (canaries first, stop at the first failure or
go on, Ctrl-C stops starting hosts); `views.py` holds the per-host work of the fleet tasks
(deploy, dry run, status, releases with drift, health check, backup, rollback);
`drift.py` compares what the hosts run. Every host keeps its own settings, connection,
lock and transaction: a fleet adds no state of its own (docs/adr/0014-fleets.md).
"""
