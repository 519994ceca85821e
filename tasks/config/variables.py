"""Every setting the tool reads, in one table.

This table is the single source for: loading and validation (`settings.py` builds the
typed `Settings` from it: one attribute per variable, named by `field`), the template
context (`tasks/release/render.py` passes every non-secret field by name, secrets under
`secrets`), the documented `.env.example` (generated from it and committed; a test
checks they match), the files `app.config` writes, and `app.settings`. Adding a setting
means one entry here and its use in a template. An unknown `TORRUST_*` name in a file is
an error, so typos never pass silently. Cross-field rules live per section in
`tasks/config/rules.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.config.trackers import RELEASES

# Kinds: how a raw string is parsed and checked (the converters are in kinds.py).
STR, INT, BOOL, ENUM, SECRET, BINDS, BIND, DOMAIN, DOMAINS, EMAIL, IMAGE, CRON = (
    "str int bool enum secret binds bind domain domains email image cron".split()
)
FILE, ABSPATH, SUBNET6, DURATION, HOST, IPV4, IPV6, IP = "file abspath subnet6 duration host ipv4 ipv6 ip".split()
PUBLIC_IPS, CREDENTIAL, SECRET_URL = "public_ips", "credential", "secret_url"
ACME_CA, SUBSET, RESOLVER = "acme_ca subset resolver".split()

PREFIX = "TORRUST_"
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"  # provider object names (server types, pools, ...)
NAME_MESSAGE = "not a valid name (letters, digits, '.', '_', '-')"


@dataclass(frozen=True)
class Var:
    name: str
    section: str  # the heading it is documented under; its cross-field rules are in rules.py
    kind: str
    default: str
    doc: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    # Value `app.config` writes for a non-local environment, when it differs from the
    # local default (secrets are generated instead).
    production: str | None = None
    # Shown in .env.example and errors as the allowed values when the kind does not say it all.
    allowed: str = ""
    optional: bool = False  # an empty value is allowed and means "not set" (or `derive`)
    # The attribute of Settings ("ssh.port": attribute `port` of the `ssh` part). Default:
    # the name without TORRUST_, lower-cased.
    field: str = ""
    # The value of an empty optional variable, from the other (converted) values.
    derive: Callable[[dict], object] | None = None
    pattern: str = ""  # a regular expression the whole value must match (kind str)
    pattern_message: str = ""
    must_exist: bool = False  # kind file: the file must exist when set

    def __post_init__(self) -> None:
        if not self.field:
            object.__setattr__(self, "field", self.name.removeprefix(PREFIX).lower())

    @property
    def secret(self) -> bool:
        """Masked everywhere, never on a command line."""
        return self.kind in (SECRET, CREDENTIAL, SECRET_URL)

    @property
    def generated(self) -> bool:
        """A secret of the stack's own, which app.config generates (not one someone else issued)."""
        return self.kind == SECRET

    @property
    def part(self) -> str:
        """The Settings part holding the value ('' for a top-level attribute)."""
        return self.field.partition(".")[0] if "." in self.field else ""

    @property
    def attr(self) -> str:
        return self.field.rpartition(".")[2]


PLACEHOLDER = "REPLACE_ME"

VARIABLES: tuple[Var, ...] = (
    # --- deploy target -----------------------------------------------------------------
    Var(
        "TORRUST_DEPLOY_TARGET",
        "Deploy target",
        ENUM,
        "local",
        "Where the stack runs: 'local' is this machine's Docker engine (no SSH); 'ssh' is a "
        "host reached over SSH with the settings below.",
        choices=("local", "ssh"),
        production="ssh",
        field="target",
    ),
    Var(
        "TORRUST_SSH_HOST",
        "Deploy target",
        HOST,
        "",
        "Host name or IP address of the SSH deploy target. infra.apply, infra.refresh and "
        "infra.register record it in .torrust/NAME/host.env (which wins over .env.NAME); "
        "set it yourself for a host you manage by hand.",
        optional=True,
        field="ssh.host",
    ),
    Var(
        "TORRUST_SSH_PORT",
        "Deploy target",
        INT,
        "22",
        "SSH port of the deploy target.",
        minimum=1,
        maximum=65535,
        field="ssh.port",
    ),
    Var(
        "TORRUST_SSH_USER",
        "Deploy target",
        STR,
        "torrust",
        "SSH user on the deploy target (not root: it needs the docker group).",
        field="ssh.user",
        pattern=r"(?!root$)[a-z_][a-z0-9_.-]{0,31}",
        pattern_message="not a valid non-root user name",
    ),
    Var(
        "TORRUST_SSH_KEY",
        "Deploy target",
        FILE,
        "",
        "Private key file for SSH. Empty: the SSH agent and the default keys are used.",
        optional=True,
        field="ssh.key",
        must_exist=True,
    ),
    Var(
        "TORRUST_SSH_KNOWN_HOSTS",
        "Deploy target",
        FILE,
        "",
        "known_hosts file holding the deploy target's host key. Empty: "
        ".torrust/<env>/known_hosts in this checkout (one per environment).",
        optional=True,
        field="ssh.known_hosts",
        derive=lambda v: v["root"] / ".torrust" / v["env"] / "known_hosts",
    ),
    Var(
        "TORRUST_SSH_CONNECT_TIMEOUT",
        "Deploy target",
        INT,
        "10",
        "Seconds to wait for the SSH connection to open.",
        minimum=1,
        maximum=600,
        field="ssh.connect_timeout",
    ),
    Var(
        "TORRUST_COMMAND_TIMEOUT",
        "Deploy target",
        INT,
        "600",
        "Seconds a single command on the target may run before it is stopped.",
        minimum=5,
        maximum=86400,
    ),
    Var(
        "TORRUST_DEPLOY_ROOT",
        "Deploy target",
        ABSPATH,
        "/opt/torrust",
        "Absolute directory on the target holding releases/, current and storage/.",
    ),
    Var(
        "TORRUST_COMPOSE_PROJECT",
        "Deploy target",
        STR,
        "torrust",
        "Docker Compose project name; fixed per environment so every command finds the same containers.",
        allowed="lowercase letters, digits, '-' and '_', starting with a letter or digit",
        pattern=r"[a-z0-9][a-z0-9_-]{0,62}",
        pattern_message="not a valid Compose project name",
    ),
    Var(
        "TORRUST_RELEASES_KEEP",
        "Deploy target",
        INT,
        "5",
        "How many releases to keep on the target (the current and previous ones are never pruned).",
        minimum=2,
        maximum=100,
    ),
    Var(
        "TORRUST_ALLOW_REMOVAL",
        "Deploy target",
        STR,
        "",
        "What a deploy may remove from the running release without --allow-removal, comma-separated: "
        "a service (grafana, prometheus), backup-cron, a published port (9090/tcp), database-driver, "
        "or all. Empty: a deploy that would remove anything stops and names it (exit 6). Set it in the "
        "committed settings so the decision is recorded.",
        optional=True,
        allowed="comma-separated: service names, backup-cron, PORT/tcp or PORT/udp, database-driver, all",
        pattern=r"[a-z0-9][a-z0-9/_-]{0,40}(,[a-z0-9][a-z0-9/_-]{0,40}){0,31}",
        pattern_message="not a comma-separated list of names",
    ),
    # --- infrastructure ----------------------------------------------------------------
    Var(
        "TORRUST_PROVIDER",
        "Infrastructure",
        ENUM,
        "none",
        "Who provides the host: 'none' (deploy target local), 'libvirt' (local KVM), "
        "'hetzner' (Hetzner Cloud) or 'existing' (a server you already own).",
        choices=("none", "libvirt", "hetzner", "existing"),
        production="existing",
    ),
    Var(
        "TORRUST_INFRA_BINARY",
        "Infrastructure",
        STR,
        "tofu",
        "OpenTofu binary the infra tasks run: 'tofu', 'terraform', or a path to either.",
        allowed="tofu, terraform, or a path whose file name is tofu or terraform",
        field="infra.binary",
        pattern=r"(?:/?[A-Za-z0-9._-]+/)*(?:tofu|terraform)",
        pattern_message="must be tofu or terraform (or a path to one of them)",
    ),
    Var(
        "TORRUST_SERVER_NAME",
        "Infrastructure",
        STR,
        "",
        "Name of the server (Hetzner) or domain (libvirt) and prefix of its resources. Empty: torrust-<env>.",
        optional=True,
        allowed="lowercase letters, digits and '-', at most 63 characters",
        field="infra.server_name",
        pattern=r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?",
        pattern_message="not a valid server name",
        derive=lambda v: f"torrust-{v['env']}".replace("_", "-"),
    ),
    Var(
        "TORRUST_SSH_PUBLIC_KEY",
        "Infrastructure",
        FILE,
        "",
        "Public key file installed for the deploy user by cloud-init and infra.bootstrap. Empty: "
        "TORRUST_SSH_KEY with '.pub' appended.",
        optional=True,
        field="infra.ssh_public_key",
        must_exist=True,
        derive=lambda v: Path(f"{v['ssh.key']}.pub") if v["ssh.key"] else None,
    ),
    Var(
        "TORRUST_DELETION_PROTECTION",
        "Infrastructure",
        BOOL,
        "false",
        "Protect the server from deletion: the provider refuses it (Hetzner) and infra.destroy needs "
        "--force-protected on top of --yes.",
        production="true",
        field="infra.deletion_protection",
    ),
    Var(
        "TORRUST_DATA_VOLUME_SIZE",
        "Infrastructure",
        INT,
        "0",
        "Size in GB of a separate data volume (Hetzner volume, libvirt disk) formatted and mounted at "
        "<deploy root>/storage. 0: no volume, storage on the system disk.",
        minimum=0,
        maximum=10000,
        field="infra.data_volume_size",
    ),
    Var(
        "TORRUST_HETZNER_SERVER_TYPE",
        "Infrastructure",
        STR,
        "cx22",
        "Hetzner Cloud server type (see `hcloud server-type list`).",
        field="infra.hetzner_server_type",
        pattern=NAME_PATTERN,
        pattern_message=NAME_MESSAGE,
    ),
    Var(
        "TORRUST_HETZNER_LOCATION",
        "Infrastructure",
        STR,
        "nbg1",
        "Hetzner Cloud location (see `hcloud location list`).",
        field="infra.hetzner_location",
        pattern=NAME_PATTERN,
        pattern_message=NAME_MESSAGE,
    ),
    Var(
        "TORRUST_HETZNER_IMAGE",
        "Infrastructure",
        STR,
        "ubuntu-24.04",
        "Hetzner Cloud system image. The cloud-init template is written for Ubuntu 24.04.",
        field="infra.hetzner_image",
        pattern=NAME_PATTERN,
        pattern_message=NAME_MESSAGE,
    ),
    Var(
        "TORRUST_LIBVIRT_URI",
        "Infrastructure",
        STR,
        "qemu:///system",
        "libvirt connection URI.",
        field="infra.libvirt_uri",
    ),
    Var(
        "TORRUST_LIBVIRT_POOL",
        "Infrastructure",
        STR,
        "default",
        "libvirt storage pool for the VM's disks.",
        field="infra.libvirt_pool",
        pattern=NAME_PATTERN,
        pattern_message=NAME_MESSAGE,
    ),
    Var(
        "TORRUST_LIBVIRT_NETWORK",
        "Infrastructure",
        STR,
        "default",
        "libvirt network the VM is attached to (DHCP).",
        field="infra.libvirt_network",
        pattern=NAME_PATTERN,
        pattern_message=NAME_MESSAGE,
    ),
    Var(
        "TORRUST_LIBVIRT_IMAGE_URL",
        "Infrastructure",
        STR,
        "https://cloud-images.ubuntu.com/releases/noble/release/ubuntu-24.04-server-cloudimg-amd64.img",
        "Ubuntu 24.04 cloud image the libvirt VM boots from (URL or local path).",
        field="infra.libvirt_image_url",
    ),
    Var(
        "TORRUST_VM_MEMORY",
        "Infrastructure",
        INT,
        "4096",
        "Memory of the libvirt VM in MB.",
        minimum=1024,
        maximum=262144,
        field="infra.vm_memory",
    ),
    Var(
        "TORRUST_VM_VCPUS",
        "Infrastructure",
        INT,
        "2",
        "Virtual CPUs of the libvirt VM.",
        minimum=1,
        maximum=64,
        field="infra.vm_vcpus",
    ),
    Var(
        "TORRUST_VM_DISK_SIZE",
        "Infrastructure",
        INT,
        "30",
        "System disk of the libvirt VM in GB.",
        minimum=10,
        maximum=4096,
        field="infra.vm_disk_size",
    ),
    Var(
        "TORRUST_CONNTRACK_MAX",
        "Infrastructure",
        INT,
        "1048576",
        "net.netfilter.nf_conntrack_max set (and persisted) by cloud-init and infra.bootstrap; the "
        "UDP tracker under Docker NAT needs a large table.",
        minimum=65536,
        maximum=67108864,
        field="infra.conntrack_max",
    ),
    Var(
        "TORRUST_WAIT_SSH_TIMEOUT",
        "Infrastructure",
        INT,
        "600",
        "Seconds infra.wait waits for SSH to accept the deploy key.",
        minimum=1,
        maximum=7200,
        field="infra.wait_ssh_timeout",
    ),
    Var(
        "TORRUST_WAIT_CLOUD_INIT_TIMEOUT",
        "Infrastructure",
        INT,
        "1800",
        "Seconds infra.wait waits for cloud-init to finish once SSH answers.",
        minimum=1,
        maximum=14400,
        field="infra.wait_cloud_init_timeout",
    ),
    Var(
        "TORRUST_WAIT_INTERVAL",
        "Infrastructure",
        INT,
        "5",
        "Seconds between two readiness checks of infra.wait.",
        minimum=1,
        maximum=300,
        field="infra.wait_interval",
    ),
    # --- domains -------------------------------------------------------------------------
    Var(
        "TORRUST_DOMAIN",
        "Domains",
        DOMAIN,
        "torrust.local",
        "Base domain. The public names below default to subdomains of it.",
        production=PLACEHOLDER,
    ),
    Var(
        "TORRUST_HTTP_TRACKER_DOMAINS",
        "Domains",
        DOMAINS,
        "",
        "Public name of each HTTP tracker, comma-separated, one per entry of "
        "TORRUST_HTTP_TRACKERS. Empty: tracker.<domain>, then tracker2.<domain>, ...",
        optional=True,
        derive=lambda v: tuple(
            f"tracker{'' if i == 0 else i + 1}.{v['domain']}" for i in range(len(v["http_trackers"]))
        ),
    ),
    Var(
        "TORRUST_API_DOMAIN",
        "Domains",
        DOMAIN,
        "",
        "Public name of the tracker's REST API. Empty: api.<domain>.",
        optional=True,
        derive=lambda v: f"api.{v['domain']}",
    ),
    Var(
        "TORRUST_GRAFANA_DOMAIN",
        "Domains",
        DOMAIN,
        "",
        "Public name of Grafana. Empty: grafana.<domain>.",
        optional=True,
        derive=lambda v: f"grafana.{v['domain']}",
    ),
    Var(
        "TORRUST_DNS_RESOLVER",
        "Domains",
        RESOLVER,
        "",
        "DNS server app.preflight asks about the public names (A, AAAA, CAA, TXT). Empty: this "
        "machine's resolvers (/etc/resolv.conf).",
        optional=True,
    ),
    Var(
        "TORRUST_DNS_BEP34",
        "Domains",
        BOOL,
        "false",
        'app.preflight also checks the BEP 34 TXT record of TORRUST_DOMAIN ("BITTORRENT UDP:6969 '
        'TCP:443"): trackers listed publicly (newTrackon) need it.',
    ),
    # --- tracker -------------------------------------------------------------------------
    Var(
        "TORRUST_UDP_TRACKERS",
        "Tracker",
        BINDS,
        "[::]:6969",
        "Bind address of each UDP tracker (BEP 15), comma-separated. '[::]' is dual-stack "
        "(IPv4 and IPv6). Each port is published on the host.",
        allowed="comma-separated HOST:PORT, e.g. [::]:6969,[::]:6868",
    ),
    Var(
        "TORRUST_HTTP_TRACKERS",
        "Tracker",
        BINDS,
        "[::]:7070",
        "Bind address of each HTTP tracker inside the container, comma-separated. They are "
        "reached through the proxy only, never published directly.",
        allowed="comma-separated HOST:PORT, e.g. [::]:7070",
    ),
    Var(
        "TORRUST_API_BIND",
        "Tracker",
        BIND,
        "[::]:1212",
        "Bind address of the REST API inside the container (reached through the proxy).",
        allowed="one HOST:PORT",
    ),
    Var(
        "TORRUST_HEALTH_CHECK_API_BIND",
        "Tracker",
        BIND,
        "127.0.0.1:1313",
        "Bind address of the health-check API inside the container (loopback: it is used by "
        "the container health check and probed from the host).",
        allowed="one HOST:PORT",
    ),
    Var(
        "TORRUST_TRACKER_PRIVATE",
        "Tracker",
        BOOL,
        "false",
        "Private tracker: peers need a key to announce.",
        field="private",
    ),
    Var(
        "TORRUST_TRACKER_LISTED",
        "Tracker",
        BOOL,
        "false",
        "Listed tracker: only whitelisted torrents are tracked.",
        field="listed",
    ),
    Var(
        "TORRUST_ANNOUNCE_INTERVAL",
        "Tracker",
        INT,
        "120",
        "Seconds a peer should wait between announces.",
        minimum=1,
        maximum=86400,
    ),
    Var(
        "TORRUST_ANNOUNCE_INTERVAL_MIN",
        "Tracker",
        INT,
        "120",
        "Minimum seconds between announces (at most TORRUST_ANNOUNCE_INTERVAL).",
        minimum=1,
        maximum=86400,
    ),
    Var(
        "TORRUST_LOG_LEVEL",
        "Tracker",
        ENUM,
        "info",
        "Tracker log threshold.",
        choices=("off", "error", "warn", "info", "debug", "trace"),
    ),
    Var(
        "TORRUST_TRACKER_EXTERNAL_IP",
        "Tracker",
        IP,
        "",
        "Public IP the tracker reports for peers on the same host. Empty: not set.",
        optional=True,
        allowed="an IPv4 or IPv6 address",
        field="external_ip",
    ),
    Var(
        "TORRUST_TRACKER_ADMIN_TOKEN",
        "Tracker",
        SECRET,
        "",
        "Admin token of the REST API; also used by Prometheus. Secret. Empty in 'local': a "
        "development value; required elsewhere (app.config generates one).",
        field="admin_token",
    ),
    Var(
        "TORRUST_TRACKER_USER_ID",
        "Tracker",
        INT,
        "1000",
        "UID the tracker container runs as; it owns the tracker's storage.",
        minimum=1,
        maximum=2**31 - 1,
        field="tracker_uid",
    ),
    # --- database ------------------------------------------------------------------------
    Var(
        "TORRUST_DB_DRIVER",
        "Database",
        ENUM,
        "sqlite3",
        "Tracker database: 'sqlite3' (a file in the tracker's storage) or 'mysql' (a MySQL "
        "service reachable only by the tracker).",
        choices=("sqlite3", "mysql"),
        production="mysql",
    ),
    Var(
        "TORRUST_MYSQL_DATABASE",
        "Database",
        STR,
        "torrust_tracker",
        "MySQL database of the tracker.",
        allowed="letters, digits and '_' (at most 64)",
        pattern=r"[A-Za-z0-9_]{1,64}",
        pattern_message="not a valid database name",
    ),
    Var(
        "TORRUST_MYSQL_USER",
        "Database",
        STR,
        "torrust",
        "MySQL user of the tracker (never root).",
        allowed="letters, digits and '_' (at most 32), not 'root'",
        pattern=r"(?![Rr][Oo][Oo][Tt]$)[A-Za-z0-9_]{1,32}",
        pattern_message="not a valid user name, or root (the tracker must not use root)",
    ),
    Var("TORRUST_MYSQL_PASSWORD", "Database", SECRET, "", "MySQL password of the tracker's user. Secret."),
    Var(
        "TORRUST_MYSQL_ROOT_PASSWORD",
        "Database",
        SECRET,
        "",
        "MySQL root password (used by backups and restores on the host). Secret.",
    ),
    # --- proxy and TLS ---------------------------------------------------------------------
    Var(
        "TORRUST_HTTP_PORT",
        "Proxy and TLS",
        INT,
        "80",
        "Host port the proxy publishes for HTTP.",
        minimum=1,
        maximum=65535,
    ),
    Var(
        "TORRUST_HTTPS_PORT",
        "Proxy and TLS",
        INT,
        "443",
        "Host port the proxy publishes for HTTPS (TCP) and HTTP/3 (UDP) when TLS is on.",
        minimum=1,
        maximum=65535,
    ),
    Var(
        "TORRUST_TLS",
        "Proxy and TLS",
        BOOL,
        "false",
        "Serve the HTTP trackers, the API and Grafana over HTTPS.",
        production="true",
    ),
    Var(
        "TORRUST_ACME_EMAIL",
        "Proxy and TLS",
        EMAIL,
        "",
        "ACME account email (expiry and problem notices from the CA); required outside 'local' when TLS "
        "is on for public names.",
        optional=True,
        production=PLACEHOLDER,
    ),
    Var(
        "TORRUST_ACME_CA",
        "Proxy and TLS",
        ACME_CA,
        "",
        "The ACME server the proxy gets public certificates from: 'letsencrypt', 'letsencrypt-staging' "
        "(untrusted certificates, generous rate limits: use it for a first deploy), or the https URL of "
        "another ACME directory. Empty: letsencrypt (letsencrypt-staging with the deprecated "
        "TORRUST_ACME_STAGING=true).",
        optional=True,
        derive=lambda v: "letsencrypt-staging" if v["acme_staging"] else "letsencrypt",
    ),
    Var(
        "TORRUST_ACME_CA_ROOT",
        "Proxy and TLS",
        FILE,
        "",
        "PEM file (on this machine) with the root certificate(s) of a private ACME server: the root of "
        "its HTTPS endpoint (the proxy trusts it to talk to the server) and the root its certificates "
        "chain to (health checks and the deploy gate verify against it); one bundle may hold both. "
        "Shipped in the release as proxy/acme-ca-root.pem. Empty: the system's trust store. Refused with "
        "letsencrypt and letsencrypt-staging (the proxy would trust only this bundle to reach their directory).",
        optional=True,
        must_exist=True,
    ),
    Var(
        "TORRUST_ACME_CHALLENGES",
        "Proxy and TLS",
        SUBSET,
        "http-01,tls-alpn-01",
        "ACME challenges the proxy may answer: http-01 (the CA connects to port 80) and tls-alpn-01 "
        "(the CA connects to port 443).",
        choices=("http-01", "tls-alpn-01"),
    ),
    Var(
        "TORRUST_ACME_CAA",
        "Proxy and TLS",
        DOMAIN,
        "",
        "The CA's CAA identity that app.preflight expects CAA records to allow. Empty: letsencrypt.org "
        "for Let's Encrypt; for another ACME server, no CAA check unless set.",
        optional=True,
        derive=lambda v: "letsencrypt.org" if v["acme_ca"] in ("letsencrypt", "letsencrypt-staging") else "",
    ),
    Var(
        "TORRUST_ACME_STAGING",
        "Proxy and TLS",
        BOOL,
        "false",
        "Deprecated: set TORRUST_ACME_CA=letsencrypt-staging instead. true selects Let's Encrypt's "
        "staging CA when TORRUST_ACME_CA is empty (and contradicts any other TORRUST_ACME_CA).",
    ),
    Var(
        "TORRUST_ISSUANCE_TIMEOUT",
        "Proxy and TLS",
        INT,
        "300",
        "Seconds a deploy's health gate waits for the proxy to obtain certificates for names it has none "
        "for yet (a first deploy, a new name), with progress lines, before it fails naming the challenge "
        "errors from the proxy's log.",
        minimum=10,
        maximum=3600,
    ),
    Var(
        "TORRUST_TLS_INTERNAL",
        "Proxy and TLS",
        ENUM,
        "auto",
        "Use the proxy's internal CA instead of ACME: 'auto' for names ending in .local, "
        ".localhost, .test or .internal; 'always'; or 'never'.",
        choices=("auto", "always", "never"),
    ),
    # --- monitoring ----------------------------------------------------------------------
    Var(
        "TORRUST_PROMETHEUS",
        "Monitoring",
        BOOL,
        "false",
        "Run Prometheus, scraping the tracker's stats and metrics.",
        production="true",
    ),
    Var(
        "TORRUST_PROMETHEUS_PORT",
        "Monitoring",
        INT,
        "9090",
        "Host port of Prometheus, published on 127.0.0.1 only.",
        minimum=1,
        maximum=65535,
    ),
    Var(
        "TORRUST_PROMETHEUS_RETENTION",
        "Monitoring",
        DURATION,
        "30d",
        "How long Prometheus keeps samples.",
        allowed="a number followed by h, d, w or y",
    ),
    Var(
        "TORRUST_GRAFANA",
        "Monitoring",
        BOOL,
        "false",
        "Run Grafana with the Prometheus datasource and the Torrust dashboards (needs TORRUST_PROMETHEUS=true).",
    ),
    Var(
        "TORRUST_GRAFANA_ADMIN_USER",
        "Monitoring",
        STR,
        "torrust-admin",
        "Grafana admin user name.",
        allowed="letters, digits, '.', '_', '-' and '@'",
        pattern=r"[A-Za-z0-9._@-]{1,64}",
        pattern_message="not a valid user name",
    ),
    Var("TORRUST_GRAFANA_ADMIN_PASSWORD", "Monitoring", SECRET, "", "Grafana admin password. Secret."),
    # --- backups -------------------------------------------------------------------------
    Var(
        "TORRUST_BACKUP",
        "Backups",
        BOOL,
        "false",
        "Install the scheduled backup (cron) on the deploy target.",
        production="true",
    ),
    Var(
        "TORRUST_BACKUP_SCHEDULE",
        "Backups",
        CRON,
        "0 3 * * *",
        "When the scheduled backup runs (cron syntax, host time zone).",
        allowed="five cron fields: minute hour day-of-month month day-of-week",
    ),
    Var(
        "TORRUST_BACKUP_RETENTION_COUNT",
        "Backups",
        INT,
        "7",
        "Keep at least this many newest backups.",
        minimum=1,
        maximum=10000,
    ),
    Var(
        "TORRUST_BACKUP_RETENTION_DAYS",
        "Backups",
        INT,
        "14",
        "Delete backups older than this many days (beyond the newest COUNT).",
        minimum=1,
        maximum=36500,
    ),
    Var(
        "TORRUST_BACKUP_DIR",
        "Backups",
        ABSPATH,
        "",
        "Absolute directory on the target for backups. Empty: <deploy root>/backups (beside "
        "storage/, so `app.down --purge-data` keeps the backups).",
        optional=True,
        derive=lambda v: f"{v['deploy_root'].rstrip('/')}/backups",
    ),
    Var(
        "TORRUST_BACKUP_COMPRESSION",
        "Backups",
        ENUM,
        "zstd",
        "Compressor for database dumps, run on the host (zstd falls back to gzip when the host "
        "lacks it; docs/benchmarks.md has the numbers).",
        choices=("zstd", "gzip"),
    ),
    Var(
        "TORRUST_BACKUP_MAX_AGE_HOURS",
        "Backups",
        INT,
        "26",
        "health.check fails the 'backup age' probe when backups are on and the newest is older.",
        minimum=1,
        maximum=8760,
    ),
    Var(
        "TORRUST_UPGRADE_BACKUP",
        "Backups",
        BOOL,
        "true",
        "Take a backup (the host backup script) before a deploy changes the tracker's or the database's "
        "image; it is recorded in the release and the audit line, and app.rollback --with-data restores it. "
        "app.deploy --no-upgrade-backup skips it once.",
    ),
    # --- images --------------------------------------------------------------------------
    Var(
        "TORRUST_TRACKER_IMAGE",
        "Images",
        IMAGE,
        "torrust/tracker:v3.0.0",
        "Tracker image, pinned to a release tag (never a moving tag such as develop).",
        allowed="NAME:TAG or NAME@sha256:DIGEST",
        field="images.tracker",
    ),
    Var(
        "TORRUST_TRACKER_RELEASE",
        "Images",
        ENUM,
        "",
        "The tracker release the image runs, when the image reference does not say (a "
        "digest-pinned development build, a private registry's name). Empty: known from "
        "TORRUST_TRACKER_IMAGE. docs/guides/tracker-releases.md lists what each release can do.",
        choices=tuple(RELEASES),
        optional=True,
    ),
    Var(
        "TORRUST_MYSQL_IMAGE",
        "Images",
        IMAGE,
        "mysql:8.4",
        "MySQL image (used when TORRUST_DB_DRIVER=mysql).",
        allowed="NAME:TAG or NAME@sha256:DIGEST",
        field="images.mysql",
    ),
    Var(
        "TORRUST_CADDY_IMAGE",
        "Images",
        IMAGE,
        "caddy:2.10.2",
        "Caddy image of the reverse proxy (also runs caddy validate). With ACME, Caddy 2.9 or later.",
        allowed="NAME:TAG or NAME@sha256:DIGEST",
        field="images.caddy",
    ),
    Var(
        "TORRUST_PROMETHEUS_IMAGE",
        "Images",
        IMAGE,
        "prom/prometheus:v3.0.1",
        "Prometheus image (also runs promtool check config).",
        allowed="NAME:TAG or NAME@sha256:DIGEST",
        field="images.prometheus",
    ),
    Var(
        "TORRUST_GRAFANA_IMAGE",
        "Images",
        IMAGE,
        "grafana/grafana:11.4.0",
        "Grafana image (used when TORRUST_GRAFANA=true).",
        allowed="NAME:TAG or NAME@sha256:DIGEST",
        field="images.grafana",
    ),
    Var(
        "TORRUST_REQUIRE_IMAGE_DIGESTS",
        "Images",
        BOOL,
        "false",
        "Outside 'local', refuse image settings that are not pinned by digest (NAME@sha256:DIGEST): a tag "
        "such as develop or latest can point at another image tomorrow.",
    ),
    # --- health probes -------------------------------------------------------------------
    Var(
        "TORRUST_PROBE_IPV4",
        "Health probes",
        IPV4,
        "",
        "IPv4 address the public probes connect to (speaking to the public names). Empty: "
        "127.0.0.1 for the local target; for SSH, TORRUST_SSH_HOST if it is IPv4, else the "
        "first HTTP tracker name resolved. 'none': no IPv4 probes.",
        optional=True,
        allowed="an IPv4 address, or none",
    ),
    Var(
        "TORRUST_PROBE_IPV6",
        "Health probes",
        IPV6,
        "",
        "IPv6 address the public probes connect to. Empty: ::1 for the local target; for SSH, "
        "TORRUST_SSH_HOST if it is IPv6, else the first HTTP tracker name resolved. 'none': "
        "no IPv6 probes.",
        optional=True,
        allowed="an IPv6 address, or none",
    ),
    Var(
        "TORRUST_PROBE_IPV6_FROM",
        "Health probes",
        ENUM,
        "auto",
        "Where the IPv6 UDP probes run: 'here' (this machine), 'host' (on the deploy target "
        "itself, against its public IPv6 address: for an operator without IPv6) or 'auto' (here "
        "when this machine has a route to the address, else the host; the result says which).",
        choices=("auto", "here", "host"),
    ),
    Var(
        "TORRUST_PROBE_TIMEOUT",
        "Health probes",
        INT,
        "5",
        "Seconds each probe attempt may take.",
        minimum=1,
        maximum=120,
    ),
    Var(
        "TORRUST_PROBE_ATTEMPTS",
        "Health probes",
        INT,
        "2",
        "Attempts per probe on network errors (a tracker's refusal is final).",
        minimum=1,
        maximum=10,
    ),
    # --- watch (health.watch) -----------------------------------------------------------
    Var(
        "TORRUST_WATCH_INTERVAL",
        "Watch",
        INT,
        "60",
        "Seconds between the starts of two health.watch rounds (--interval). A watch installed on "
        "another host runs from cron: whole minutes dividing an hour, or whole hours dividing a day.",
        minimum=1,
        maximum=86400,
        field="watch.interval",
    ),
    Var(
        "TORRUST_WATCH_JITTER",
        "Watch",
        INT,
        "5",
        "Each round starts up to this many seconds late, at random, so vantages do not probe in "
        "lockstep (at most half the interval).",
        minimum=0,
        maximum=43200,
        field="watch.jitter",
    ),
    Var(
        "TORRUST_WATCH_DOWN_AFTER",
        "Watch",
        INT,
        "3",
        "A probe is reported down after this many consecutive failed rounds (and recovered at its next success).",
        minimum=1,
        maximum=100,
        field="watch.down_after",
    ),
    Var(
        "TORRUST_WATCH_CERT_DAYS",
        "Watch",
        INT,
        "14",
        "Alert once when a certificate has fewer days left (again only after a renewal).",
        minimum=1,
        maximum=365,
        field="watch.cert_days",
    ),
    Var(
        "TORRUST_WATCH_SILENT_AFTER",
        "Watch",
        INT,
        "600",
        "Alert when a vantage recorded no round for this many seconds (at least twice the interval).",
        minimum=2,
        maximum=2678400,
        field="watch.silent_after",
    ),
    Var(
        "TORRUST_WATCH_RETENTION_RAW_DAYS",
        "Watch",
        INT,
        "7",
        "Days one row per probe result is kept; older hours are folded into hourly aggregates.",
        minimum=1,
        maximum=3650,
        field="watch.retention_raw_days",
    ),
    Var(
        "TORRUST_WATCH_RETENTION_HOURLY_DAYS",
        "Watch",
        INT,
        "400",
        "Days the hourly aggregates are kept (at least the raw retention).",
        minimum=1,
        maximum=3650,
        field="watch.retention_hourly_days",
    ),
    Var(
        "TORRUST_WATCH_WEBHOOK_URL",
        "Watch",
        SECRET_URL,
        "",
        "Webhook for alerts: a JSON POST with a 'text' field (Slack incoming webhooks, Matrix "
        "hookshot). Secret: the token is in the path. Empty: no webhook.",
        optional=True,
        field="watch.webhook_url",
    ),
    Var(
        "TORRUST_WATCH_SMTP_HOST",
        "Watch",
        HOST,
        "",
        "SMTP relay for e-mail alerts. Empty: no e-mail.",
        optional=True,
        field="watch.smtp_host",
    ),
    Var(
        "TORRUST_WATCH_SMTP_PORT",
        "Watch",
        INT,
        "587",
        "Port of the SMTP relay.",
        minimum=1,
        maximum=65535,
        field="watch.smtp_port",
    ),
    Var(
        "TORRUST_WATCH_SMTP_USER",
        "Watch",
        STR,
        "",
        "SMTP user (with a password).",
        optional=True,
        pattern=r"[^\s]{1,254}",
        pattern_message="not a user name (no spaces)",
        field="watch.smtp_user",
    ),
    Var(
        "TORRUST_WATCH_SMTP_PASSWORD",
        "Watch",
        CREDENTIAL,
        "",
        "SMTP password. Secret.",
        optional=True,
        field="watch.smtp_password",
    ),
    Var(
        "TORRUST_WATCH_SMTP_FROM",
        "Watch",
        EMAIL,
        "",
        "Sender of alert e-mails.",
        optional=True,
        field="watch.smtp_from",
    ),
    Var(
        "TORRUST_WATCH_SMTP_TO",
        "Watch",
        STR,
        "",
        "Recipients of alert e-mails, comma-separated.",
        optional=True,
        allowed="e-mail addresses, comma-separated",
        pattern=r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+(\s*,\s*[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+)*",
        pattern_message="not a comma-separated list of e-mail addresses",
        field="watch.smtp_to",
    ),
    Var(
        "TORRUST_WATCH_SMTP_STARTTLS",
        "Watch",
        BOOL,
        "true",
        "Use STARTTLS (a password is refused over a plain connection to another host).",
        field="watch.smtp_starttls",
    ),
    Var(
        "TORRUST_WATCH_SMTP_CAFILE",
        "Watch",
        FILE,
        "",
        "A CA (PEM) to trust for a private relay besides the system's.",
        optional=True,
        must_exist=True,
        field="watch.smtp_cafile",
    ),
    Var(
        "TORRUST_WATCH_VANTAGE",
        "Watch",
        STR,
        "",
        "Name of this vantage in the store, alerts and metrics. Empty: this machine's host name.",
        optional=True,
        pattern=r"[a-z0-9][a-z0-9._-]{0,62}",
        pattern_message="not a vantage name",
        allowed="lowercase letters, digits, '.', '_', '-', at most 63 characters",
        field="watch.vantage",
    ),
    Var(
        "TORRUST_WATCH_STORE",
        "Watch",
        FILE,
        "",
        "The watch's history (SQLite). Empty: .torrust/<env>/watch.sqlite in this checkout.",
        optional=True,
        field="watch.store",
        derive=lambda v: v["root"] / ".torrust" / v["env"] / "watch.sqlite",
    ),
    Var(
        "TORRUST_WATCH_METRICS_PORT",
        "Watch",
        INT,
        "0",
        "Serve Prometheus metrics of the watch on this port (--metrics-port). 0: off.",
        minimum=0,
        maximum=65535,
        field="watch.metrics_port",
    ),
    Var(
        "TORRUST_WATCH_BESIDE_STACK",
        "Watch",
        BOOL,
        "false",
        "A health.watch runs on the stack's own host with its metrics on (TORRUST_WATCH_METRICS_PORT, "
        "bound to the Docker bridge gateway, e.g. 172.17.0.1): the stack's Prometheus scrapes it "
        "(job torrust_watch) and Grafana shows its dashboard.",
        field="watch.beside_stack",
    ),
    Var(
        "TORRUST_WATCH_METRICS_BIND",
        "Watch",
        IP,
        "127.0.0.1",
        "Address the metrics endpoint listens on.",
        field="watch.metrics_bind",
    ),
    # --- network -------------------------------------------------------------------------
    Var(
        "TORRUST_IPV6",
        "Network",
        BOOL,
        "false",
        "Give the public Docker network an IPv6 subnet so published UDP works over IPv6 (the "
        'host\'s Docker daemon needs "ip6tables": true).',
        production="true",
    ),
    Var(
        "TORRUST_PUBLIC_ADDRESSES",
        "Network",
        PUBLIC_IPS,
        "",
        "Extra public addresses of the host (floating IPs), besides the one it is reached at, "
        "comma-separated. infra.bootstrap and cloud-init keep each on the interface of its "
        "family's default route and route the replies of connections that arrive on it out "
        "through that address; health.check probes each one and checks the reply comes from it.",
        optional=True,
    ),
    Var(
        "TORRUST_IPV6_SUBNET",
        "Network",
        SUBNET6,
        "fd00:7472:6b72::/64",
        "IPv6 subnet of the public Docker network when TORRUST_IPV6 is on.",
        allowed="an IPv6 network in CIDR notation, /48 to /112",
    ),
)

BY_NAME: dict[str, Var] = {v.name: v for v in VARIABLES}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(v.section for v in VARIABLES))
