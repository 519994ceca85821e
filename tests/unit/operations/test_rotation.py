"""tasks/operations/rotation.py and the pieces it uses: which secrets rotate, where they
may come from, the SQL fed on stdin, .env.NAME rewritten with its backup."""

from __future__ import annotations

import pytest

from tasks.commands import secrets as cmd
from tasks.config import envfile
from tasks.config.settings import load
from tasks.errors import ConfigError
from tasks.operations import rotation

STRONG = "Dp4-Kx9Wq2Lm7Zt5Rv8Nb3Hc6Jf1Gs0Y"


def test_every_secret_the_environment_uses(workdir):
    assert rotation.choose(load("local", root=workdir, environ={}), []) == ["admin-token"]
    s = load(
        "local",
        root=workdir,
        environ={
            "TORRUST_DB_DRIVER": "mysql",
            "TORRUST_PROMETHEUS": "true",
            "TORRUST_GRAFANA": "true",
            "TORRUST_TRACKER_IMAGE": "torrust-test/tracker-standin:develop-02c33f69",  # has metrics
        },
    )
    assert rotation.choose(s, []) == list(rotation.ROTATABLE)
    assert rotation.choose(s, ["TORRUST_MYSQL_PASSWORD", "admin-token", "mysql-password"]) == [
        "mysql-password",
        "admin-token",
    ]


def test_only_names_what_the_environment_uses(workdir):
    s = load("local", root=workdir, environ={})
    with pytest.raises(ConfigError, match="--only 'mysql-password': not a secret this environment uses") as info:
        rotation.choose(s, ["mysql-password"])
    assert info.value.hint == "allowed: admin-token (or their variable names)"


def test_a_secret_from_the_process_environment_is_refused(workdir):
    s = load("local", root=workdir, environ={"TORRUST_TRACKER_ADMIN_TOKEN": STRONG})
    with pytest.raises(ConfigError, match="TORRUST_TRACKER_ADMIN_TOKEN come"):
        rotation.check_sources(s, ["admin-token"])
    (workdir / ".env.local").write_text(f"TORRUST_TRACKER_ADMIN_TOKEN={STRONG}\n")
    rotation.check_sources(load("local", root=workdir, environ={}), ["admin-token"])  # from the file: fine


def test_the_sql_and_the_stdin_carry_the_secrets_never_the_argv():
    sql = cmd.alter_users_sql("torrust", "R00t-new", "us'er")
    assert sql == (
        "ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY 'R00t-new', 'root'@'%' IDENTIFIED BY 'R00t-new';\n"
        "ALTER USER IF EXISTS 'torrust'@'%' IDENTIFIED BY 'us''er', 'torrust'@'localhost' IDENTIFIED BY 'us''er';\n"
    )
    assert cmd.alter_users_sql("torrust", None, "x").count("root") == 0
    assert cmd.root_input("old", "new", "SQL;\n") == b"old\nnew\nSQL;\n"
    argv = cmd.mysql_root("p", "/opt/torrust/current")
    assert argv[-3:] == ["-c", argv[-2], "mysql-root"] and "exec" in argv and "-T" in argv
    assert cmd.mysql_login("p", "/d", "torrust")[-2:] == ["mysql-login", "torrust"]
    assert cmd.grafana_reset("p", "/d")[-5:] == [
        "grafana",
        "cli",
        "admin",
        "reset-admin-password",
        "--password-from-stdin",
    ]


def test_the_env_file_is_rewritten_and_the_old_one_kept(workdir):
    path = workdir / ".env.prod"
    path.write_text("# mine\nTORRUST_SSH_HOST=203.0.113.7\nTORRUST_TRACKER_ADMIN_TOKEN=old\nexport TORRUST_X=1\n")
    path.chmod(0o640)
    new, backup = envfile.rewrite_values(
        workdir, "prod", {"TORRUST_TRACKER_ADMIN_TOKEN": "n3w", "TORRUST_MYSQL_PASSWORD": "p"}, "T"
    )
    assert new == path and backup == workdir / ".env.prod.bak-T"
    assert path.read_text().splitlines() == [
        "# mine",
        "TORRUST_SSH_HOST=203.0.113.7",
        "TORRUST_TRACKER_ADMIN_TOKEN=n3w",
        "export TORRUST_X=1",
        "TORRUST_MYSQL_PASSWORD=p",
    ]
    assert "TORRUST_TRACKER_ADMIN_TOKEN=old" in backup.read_text()
    assert oct(path.stat().st_mode)[-3:] == "600" and oct(backup.stat().st_mode)[-3:] == "600"
    envfile.put_back(path, backup)
    assert "TORRUST_TRACKER_ADMIN_TOKEN=old" in path.read_text() and oct(path.stat().st_mode)[-3:] == "600"
    created, none = envfile.rewrite_values(workdir, "fresh", {"TORRUST_TRACKER_ADMIN_TOKEN": "n"}, "T")
    assert none is None and created.read_text() == "TORRUST_TRACKER_ADMIN_TOKEN=n\n"
    envfile.put_back(created, None)
    assert not created.exists()


def test_a_failed_command_is_summed_up_in_one_line():
    from tasks.errors import CommandFailed

    long = "host: `sh -c '" + "x" * 300 + "'` exited with 1\n    ERROR 1396 (HY000): Operation ALTER USER failed"
    err = CommandFailed(long, exit_status=1, output="noise\nERROR 1396 (HY000): Operation ALTER USER failed\n")
    assert err.brief().endswith("... (exit 1): ERROR 1396 (HY000): Operation ALTER USER failed")
    assert len(err.brief()) < 200
    lost = CommandFailed("host: the connection was lost while running `up`", exit_status=-1, output="partial")
    assert lost.brief() == "host: the connection was lost while running `up`"
    assert rotation._reason(err) == err.brief() and rotation._reason(EOFError("gone")) == "EOFError: gone"
