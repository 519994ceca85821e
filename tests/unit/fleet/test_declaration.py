"""A fleet's declaration (tasks/fleet/declaration.py): read from fleets.toml, validated like
settings (every problem at once, each naming the key or the environments), and the
rollout flags checked against the fleet."""

from __future__ import annotations

import pytest

from tasks.errors import ConfigError, ExitCode
from tasks.fleet import declaration as d
from tests.conftest import snapshot
from tests.unit.fleet.checkout import FLEET, THREE, ssh_env, write


def load(root, name="public"):
    return d.load(name, root=root, environ={})


def test_a_fleet_loads_with_every_member_settings(workdir):
    fleet = load(write(workdir, THREE, FLEET))
    assert fleet.names == ["ta", "tb", "tc"]
    assert (fleet.parallel, fleet.canary) == (2, 1)
    assert [m.settings.ssh.host for m in fleet.members] == ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
    assert fleet.members[0].where == "torrust@192.0.2.10"


def test_defaults_one_at_a_time_no_canary(workdir):
    fleet = load(write(workdir, THREE, '[fleet.public]\nenvironments = ["tb", "ta"]\n'))
    assert fleet.names == ["tb", "ta"] and (fleet.parallel, fleet.canary) == (1, 0)


def test_unknown_environment_is_named_with_the_known_ones(workdir):
    write(workdir, THREE, '[fleet.public]\nenvironments = ["ta", "tx"]\n')
    before = snapshot(workdir)
    with pytest.raises(d.FleetError) as err:
        load(workdir)
    assert err.value.code == ExitCode.CONFIG
    assert err.value.problems == [
        "environments: 'tx' is not an environment here (no .env.tx or .torrust/tx/host.env; "
        "environments: local, ta, tb, tc)"
    ]
    assert "fleet 'public' (fleets.toml) has 1 problem" in err.value.message
    assert "no host was contacted" in err.value.hint
    assert snapshot(workdir) == before


def test_two_environments_on_one_host_and_deploy_root(workdir):
    envs = {**THREE, "tc": ssh_env("192.0.2.10", TORRUST_COMPOSE_PROJECT="other", TORRUST_HTTP_PORT="8080")}
    write(workdir, envs, '[fleet.public]\nenvironments = ["ta", "tb", "tc"]\n')
    with pytest.raises(d.FleetError) as err:
        load(workdir)
    assert err.value.problems == [
        "environments 'ta' and 'tc' both use, on 192.0.2.10: deploy root /opt/torrust; published ports UDP 6969 "
        "(each needs its own host, or its own TORRUST_DEPLOY_ROOT, the ports)"
    ]


def test_one_host_is_fine_with_its_own_root_project_and_ports(workdir):
    envs = {
        "ta": ssh_env("192.0.2.10"),
        "tb": ssh_env(
            "192.0.2.10",
            TORRUST_DEPLOY_ROOT="/opt/torrust-b",
            TORRUST_COMPOSE_PROJECT="torrustb",
            TORRUST_UDP_TRACKERS="[::]:6970",
            TORRUST_HTTP_PORT="8080",
        ),
    }
    assert load(write(workdir, envs, '[fleet.public]\nenvironments = ["ta", "tb"]\n')).names == ["ta", "tb"]


def test_loopback_ssh_and_the_local_target_are_one_machine(workdir):
    envs = {"ta": ssh_env("127.0.0.1", TORRUST_SSH_PORT="2201"), "tb": ssh_env("::1", TORRUST_SSH_PORT="2202")}
    write(workdir, envs, '[fleet.public]\nenvironments = ["ta", "tb", "local"]\n')
    with pytest.raises(d.FleetError) as err:
        load(workdir)
    assert len(err.value.problems) == 3  # every pair shares this machine's root, project and ports
    assert all("on this machine: deploy root /opt/torrust; Compose project torrust" in p for p in err.value.problems)


def test_hosts_of_a_fleet_need_public_names_of_their_own(workdir):
    envs = {**THREE, "tc": ssh_env("192.0.2.12", TORRUST_DOMAIN="h192-0-2-10.trackers.torrust.test")}
    write(workdir, envs, '[fleet.public]\nenvironments = ["ta", "tb", "tc"]\n')
    with pytest.raises(d.FleetError) as err:
        load(workdir)
    assert err.value.problems == [
        "environments 'ta' and 'tc' run on different hosts (192.0.2.10, 192.0.2.12) but share the public names "
        "api.h192-0-2-10.trackers.torrust.test, h192-0-2-10.trackers.torrust.test, "
        "tracker.h192-0-2-10.trackers.torrust.test: each tracker needs names of its own (TORRUST_DOMAIN, "
        "TORRUST_HTTP_TRACKER_DOMAINS, TORRUST_API_DOMAIN, TORRUST_GRAFANA_DOMAIN)"
    ]


def test_every_problem_at_once(workdir):
    envs = {**THREE, "tb": {**ssh_env("192.0.2.11"), "TORRUST_HTTP_PORT": "http"}}
    fleets = '[fleet.public]\nenvironments = ["ta", "tb", "ta", "nope"]\nparalel = 2\nparallel = 0\ncanary = 9\n'
    write(workdir, envs, fleets)
    with pytest.raises(d.FleetError) as err:
        load(workdir)
    problems = err.value.problems
    assert problems[0] == "paralel: unknown key; did you mean parallel?"
    assert "environments: 'ta' is listed twice" in problems
    assert any(p.startswith("environments: 'nope' is not an environment here") for p in problems)
    assert "parallel = '0': allowed: a whole number from 1 to 64" in problems
    assert "canary = '9': allowed: a whole number from 0 to 2" in problems
    assert any(p.startswith("environment 'tb': TORRUST_HTTP_PORT = 'http' (.env.tb:") for p in problems)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fleet.public]\nenvironments = []\n", "environments: a non-empty list of environment names is required"),
        ('[fleet.public]\nenvironments = "ta"\n', "environments: a non-empty list of environment names is required"),
        ('[fleet.public]\nenvironments = ["ta"]\nparallel = true\n', "parallel = 'True': allowed"),
        ('[fleet.public]\nenvironments = ["ta"]\ncanary = -1\n', "canary = '-1': allowed"),
    ],
)
def test_bad_values_are_named(workdir, text, message):
    with pytest.raises(d.FleetError) as err:
        load(write(workdir, THREE, text))
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems


def test_missing_fleet_lists_the_declared_ones(workdir):
    write(workdir, THREE, FLEET)
    with pytest.raises(ConfigError) as err:
        load(workdir, "publik")
    assert err.value.message == "--fleet 'publik': no such fleet in fleets.toml (fleets: public)"
    assert err.value.hint == "did you mean 'public'?"


def test_no_fleets_file(workdir):
    with pytest.raises(ConfigError) as err:
        load(workdir)
    assert "fleets: none: fleets.toml is missing or empty" in err.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fleet.public\n", "fleets.toml: not valid TOML (Expected ']' at the end of a table declaration (at line 1"),
        ("environments = ['ta']\n", "fleets.toml: only [fleet.NAME] tables are allowed, found environments"),
        ("fleet = 3\n", "fleets.toml: only [fleet.NAME] tables are allowed, found fleet = a value"),
    ],
)
def test_malformed_file(workdir, text, message):
    with pytest.raises(ConfigError) as err:
        load(write(workdir, THREE, text))
    assert err.value.message.startswith(message), err.value.message


def test_a_bad_fleet_name(workdir):
    with pytest.raises(d.FleetError) as err:
        load(write(workdir, THREE, '[fleet."Public Trackers"]\nenvironments = ["ta"]\n'), "Public Trackers")
    assert "a fleet name is lowercase letters" in err.value.problems[0]


# ------------------------------------------------------------------------ flags
@pytest.fixture
def fleet(workdir):
    return load(write(workdir, THREE, FLEET))


def test_flags_default_to_the_fleet(fleet):
    assert d.rollout_options(fleet, None, None, False) == d.RolloutOptions(2, 1, False)
    assert d.rollout_options(fleet, "3", "0", True) == d.RolloutOptions(3, 0, True)
    assert d.rollout_options(fleet, 1, 3, False) == d.RolloutOptions(1, 3, False)


@pytest.mark.parametrize(
    ("parallel", "canary", "message"),
    [
        ("0", None, "--parallel '0': allowed: a whole number from 1 to 64"),
        ("65", None, "--parallel '65': allowed: a whole number from 1 to 64"),
        ("two", None, "--parallel 'two': allowed: a whole number from 1 to 64"),
        (None, "4", "--canary '4': allowed: a whole number from 0 to 3 (the fleet 'public' has 3 hosts)"),
        (None, "-1", "--canary '-1': allowed: a whole number from 0 to 3 (the fleet 'public' has 3 hosts)"),
    ],
)
def test_bad_flags_are_named(fleet, parallel, canary, message):
    with pytest.raises(ConfigError) as err:
        d.rollout_options(fleet, parallel, canary, False)
    assert err.value.message == message and err.value.hint == "nothing was started"
