"""Getting a host: OpenTofu per provider, cloud-init, readiness, hosts you already own.

`state` (where each environment's OpenTofu state, variables and recorded host live),
`tofu` (command builders and the runner), `cloudinit` (user-data and the hardening
script), `wait` (readiness), `host` (register and bootstrap). docs/adr/0009.
"""
