"""Every setting the tool reads, in one table.

This table is the single source for: loading and validation (`settings.py`), the
documented `.env.example` (generated from it and committed; a test checks they match),
the files `app.config` writes, and `app.settings`. The code reads settings only through
it: an unknown `TORRUST_*` name in a file is an error, so typos never pass silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Kinds: how a raw string is parsed and checked (see settings.py).
STR, INT, BOOL, ENUM, SECRET, BINDS, DOMAIN, DOMAINS, EMAIL, IMAGE, CRON, PATH, SUBNET6, DURATION = (
    "str int bool enum secret binds domain domains email image cron path subnet6 duration".split()
)


@dataclass(frozen=True)
class Var:
    name: str
    group: str
    kind: str
    default: str
    doc: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    # Value `app.config` writes for a non-local environment, when it differs from the
    # local default (secrets are generated instead).
    production: str | None = None
    # Shown in .env.example as the allowed values when the kind does not say it all.
    allowed: str = ""
    optional: bool = False  # an empty value is allowed and means "not set"
    extra: dict = field(default_factory=dict)

    @property
    def secret(self) -> bool:
        return self.kind == SECRET


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
    ),
    Var(
        "TORRUST_SSH_HOST",
        "Deploy target",
        STR,
        "",
        "Host name or IP address of the SSH deploy target. infra.apply, infra.refresh and "
        "infra.register record it in .torrust/NAME/host.env (which wins over .env.NAME); "
        "set it yourself for a host you manage by hand.",
        optional=True,
    ),
    Var("TORRUST_SSH_PORT", "Deploy target", INT, "22", "SSH port of the deploy target.", minimum=1, maximum=65535),
    Var(
        "TORRUST_SSH_USER",
        "Deploy target",
        STR,
        "torrust",
        "SSH user on the deploy target (not root: it needs the docker group).",
    ),
    Var(
        "TORRUST_SSH_KEY",
        "Deploy target",
        PATH,
        "",
        "Private key file for SSH. Empty: the SSH agent and the default keys are used.",
        optional=True,
    ),
    Var(
        "TORRUST_SSH_KNOWN_HOSTS",
        "Deploy target",
        PATH,
        "",
        "known_hosts file holding the deploy target's host key. Empty: "
        ".torrust/<env>/known_hosts in this checkout (one per environment).",
        optional=True,
    ),
    Var(
        "TORRUST_SSH_CONNECT_TIMEOUT",
        "Deploy target",
        INT,
        "10",
        "Seconds to wait for the SSH connection to open.",
        minimum=1,
        maximum=600,
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
        PATH,
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
    ),
    Var(
        "TORRUST_SERVER_NAME",
        "Infrastructure",
        STR,
        "",
        "Name of the server (Hetzner) or domain (libvirt) and prefix of its resources. Empty: torrust-<env>.",
        optional=True,
        allowed="lowercase letters, digits and '-', at most 63 characters",
    ),
    Var(
        "TORRUST_SSH_PUBLIC_KEY",
        "Infrastructure",
        PATH,
        "",
        "Public key file installed for the deploy user by cloud-init and infra.bootstrap. Empty: "
        "TORRUST_SSH_KEY with '.pub' appended.",
        optional=True,
    ),
    Var(
        "TORRUST_DELETION_PROTECTION",
        "Infrastructure",
        BOOL,
        "false",
        "Protect the server from deletion: the provider refuses it (Hetzner) and infra.destroy needs "
        "--force-protected on top of --yes.",
        production="true",
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
    ),
    Var(
        "TORRUST_HETZNER_SERVER_TYPE",
        "Infrastructure",
        STR,
        "cx22",
        "Hetzner Cloud server type (see `hcloud server-type list`).",
    ),
    Var(
        "TORRUST_HETZNER_LOCATION",
        "Infrastructure",
        STR,
        "nbg1",
        "Hetzner Cloud location (see `hcloud location list`).",
    ),
    Var(
        "TORRUST_HETZNER_IMAGE",
        "Infrastructure",
        STR,
        "ubuntu-24.04",
        "Hetzner Cloud system image. The cloud-init template is written for Ubuntu 24.04.",
    ),
    Var(
        "TORRUST_LIBVIRT_URI",
        "Infrastructure",
        STR,
        "qemu:///system",
        "libvirt connection URI.",
    ),
    Var(
        "TORRUST_LIBVIRT_POOL",
        "Infrastructure",
        STR,
        "default",
        "libvirt storage pool for the VM's disks.",
    ),
    Var(
        "TORRUST_LIBVIRT_NETWORK",
        "Infrastructure",
        STR,
        "default",
        "libvirt network the VM is attached to (DHCP).",
    ),
    Var(
        "TORRUST_LIBVIRT_IMAGE_URL",
        "Infrastructure",
        STR,
        "https://cloud-images.ubuntu.com/releases/noble/release/ubuntu-24.04-server-cloudimg-amd64.img",
        "Ubuntu 24.04 cloud image the libvirt VM boots from (URL or local path).",
    ),
    Var(
        "TORRUST_VM_MEMORY",
        "Infrastructure",
        INT,
        "4096",
        "Memory of the libvirt VM in MB.",
        minimum=1024,
        maximum=262144,
    ),
    Var("TORRUST_VM_VCPUS", "Infrastructure", INT, "2", "Virtual CPUs of the libvirt VM.", minimum=1, maximum=64),
    Var(
        "TORRUST_VM_DISK_SIZE",
        "Infrastructure",
        INT,
        "30",
        "System disk of the libvirt VM in GB.",
        minimum=10,
        maximum=4096,
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
    ),
    Var(
        "TORRUST_WAIT_SSH_TIMEOUT",
        "Infrastructure",
        INT,
        "600",
        "Seconds infra.wait waits for SSH to accept the deploy key.",
        minimum=1,
        maximum=7200,
    ),
    Var(
        "TORRUST_WAIT_CLOUD_INIT_TIMEOUT",
        "Infrastructure",
        INT,
        "1800",
        "Seconds infra.wait waits for cloud-init to finish once SSH answers.",
        minimum=1,
        maximum=14400,
    ),
    Var(
        "TORRUST_WAIT_INTERVAL",
        "Infrastructure",
        INT,
        "5",
        "Seconds between two readiness checks of infra.wait.",
        minimum=1,
        maximum=300,
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
    ),
    Var(
        "TORRUST_API_DOMAIN",
        "Domains",
        DOMAIN,
        "",
        "Public name of the tracker's REST API. Empty: api.<domain>.",
        optional=True,
    ),
    Var(
        "TORRUST_GRAFANA_DOMAIN",
        "Domains",
        DOMAIN,
        "",
        "Public name of Grafana. Empty: grafana.<domain>.",
        optional=True,
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
        BINDS,
        "[::]:1212",
        "Bind address of the REST API inside the container (reached through the proxy).",
        allowed="one HOST:PORT",
        extra={"single": True},
    ),
    Var(
        "TORRUST_HEALTH_CHECK_API_BIND",
        "Tracker",
        BINDS,
        "127.0.0.1:1313",
        "Bind address of the health-check API inside the container (loopback: it is used by "
        "the container health check and probed from the host).",
        allowed="one HOST:PORT",
        extra={"single": True},
    ),
    Var("TORRUST_TRACKER_PRIVATE", "Tracker", BOOL, "false", "Private tracker: peers need a key to announce."),
    Var("TORRUST_TRACKER_LISTED", "Tracker", BOOL, "false", "Listed tracker: only whitelisted torrents are tracked."),
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
        STR,
        "",
        "Public IP the tracker reports for peers on the same host. Empty: not set.",
        optional=True,
        allowed="an IPv4 or IPv6 address",
    ),
    Var(
        "TORRUST_TRACKER_ADMIN_TOKEN",
        "Tracker",
        SECRET,
        "",
        "Admin token of the REST API; also used by Prometheus. Secret. Empty in 'local': a "
        "development value; required elsewhere (app.config generates one).",
    ),
    Var(
        "TORRUST_TRACKER_USER_ID",
        "Tracker",
        INT,
        "1000",
        "UID the tracker container runs as; it owns the tracker's storage.",
        minimum=1,
        maximum=2**31 - 1,
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
    ),
    Var(
        "TORRUST_MYSQL_USER",
        "Database",
        STR,
        "torrust",
        "MySQL user of the tracker (never root).",
        allowed="letters, digits and '_' (at most 32), not 'root'",
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
        "Let's Encrypt account email; required outside 'local' when TLS is on.",
        optional=True,
        production=PLACEHOLDER,
    ),
    Var(
        "TORRUST_ACME_STAGING",
        "Proxy and TLS",
        BOOL,
        "false",
        "Use Let's Encrypt's staging CA (untrusted certificates, generous rate limits).",
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
        production="true",
    ),
    Var(
        "TORRUST_GRAFANA_ADMIN_USER",
        "Monitoring",
        STR,
        "torrust-admin",
        "Grafana admin user name.",
        allowed="letters, digits, '.', '_', '-' and '@'",
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
        PATH,
        "",
        "Absolute directory on the target for backups. Empty: <deploy root>/backups (beside "
        "storage/, so `app.down --purge-data` keeps the backups).",
        optional=True,
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
    # --- images --------------------------------------------------------------------------
    Var(
        "TORRUST_TRACKER_IMAGE",
        "Images",
        IMAGE,
        "torrust/tracker:v3.0.0",
        "Tracker image, pinned to a release tag (never a moving tag such as develop).",
        allowed="NAME:TAG or NAME@sha256:DIGEST",
    ),
    Var(
        "TORRUST_MYSQL_IMAGE",
        "Images",
        IMAGE,
        "mysql:8.4",
        "MySQL image (used when TORRUST_DB_DRIVER=mysql).",
        allowed="NAME:TAG or NAME@sha256:DIGEST",
    ),
    Var(
        "TORRUST_CADDY_IMAGE",
        "Images",
        IMAGE,
        "caddy:2.8.4",
        "Caddy image of the reverse proxy (also runs caddy validate).",
        allowed="NAME:TAG or NAME@sha256:DIGEST",
    ),
    Var(
        "TORRUST_PROMETHEUS_IMAGE",
        "Images",
        IMAGE,
        "prom/prometheus:v3.0.1",
        "Prometheus image (also runs promtool check config).",
        allowed="NAME:TAG or NAME@sha256:DIGEST",
    ),
    Var(
        "TORRUST_GRAFANA_IMAGE",
        "Images",
        IMAGE,
        "grafana/grafana:11.4.0",
        "Grafana image (used when TORRUST_GRAFANA=true).",
        allowed="NAME:TAG or NAME@sha256:DIGEST",
    ),
    # --- health probes -------------------------------------------------------------------
    Var(
        "TORRUST_PROBE_IPV4",
        "Health probes",
        STR,
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
        STR,
        "",
        "IPv6 address the public probes connect to. Empty: ::1 for the local target; for SSH, "
        "TORRUST_SSH_HOST if it is IPv6, else the first HTTP tracker name resolved. 'none': "
        "no IPv6 probes.",
        optional=True,
        allowed="an IPv6 address, or none",
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
        "TORRUST_IPV6_SUBNET",
        "Network",
        SUBNET6,
        "fd00:7472:6b72::/64",
        "IPv6 subnet of the public Docker network when TORRUST_IPV6 is on.",
        allowed="an IPv6 network in CIDR notation, /48 to /112",
    ),
)

BY_NAME: dict[str, Var] = {v.name: v for v in VARIABLES}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(v.group for v in VARIABLES))
