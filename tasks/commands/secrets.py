"""Command lines of secret rotation (pure). Secret values never appear here: the scripts
read them on stdin (tasks/commands/scripts/mysql-root.sh, mysql-login.sh), and the SQL
that carries them is built by `alter_users_sql` into the bytes fed on stdin."""

from __future__ import annotations

from tasks.commands import script
from tasks.commands.docker import compose

GRAFANA_RESET = ["grafana", "cli", "admin", "reset-admin-password", "--password-from-stdin"]


def in_service(project: str, directory: str, service: str, *argv: str) -> list[str]:
    """`docker compose exec -T SERVICE ARGV` (stdin passed through)."""
    return compose(project, directory, "exec", "-T", service, *argv)


def mysql_root(project: str, directory: str) -> list[str]:
    return in_service(project, directory, "mysql", "sh", "-c", script("mysql-root"), "mysql-root")


def mysql_login(project: str, directory: str, user: str) -> list[str]:
    return in_service(project, directory, "mysql", "sh", "-c", script("mysql-login"), "mysql-login", user)


def grafana_reset(project: str, directory: str) -> list[str]:
    """Grafana keeps its admin password in its database (the environment only seeds it):
    `grafana cli admin reset-admin-password --password-from-stdin` (Grafana 9.1+)."""
    return in_service(project, directory, "grafana", *GRAFANA_RESET)


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def alter_users_sql(user: str, root_password: str | None, user_password: str | None) -> str:
    """ALTER USER for root (localhost and %) and the tracker's user (%, localhost), each
    only if it exists; None leaves that password alone."""
    statements = []
    if root_password is not None:
        pw = literal(root_password)
        statements.append(f"ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY {pw}, 'root'@'%' IDENTIFIED BY {pw};")
    if user_password is not None:
        u, pw = literal(user), literal(user_password)
        statements.append(f"ALTER USER IF EXISTS {u}@'%' IDENTIFIED BY {pw}, {u}@'localhost' IDENTIFIED BY {pw};")
    return "\n".join(statements) + "\n"


def root_input(first: str, second: str, sql: str) -> bytes:
    """stdin of mysql-root.sh: the passwords to try, then the SQL."""
    return f"{first}\n{second}\n{sql}".encode()
