//! Typed settings, from flags or their environment variables (docs/reference.md: "Configuration").
use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;

#[derive(Debug, Parser)]
#[command(
    name = "appkeys",
    version,
    about = "Issues and governs application keys over GraphQL",
    long_about = "Issues and governs application keys over GraphQL. Without a command it serves, taking the \
                  flags of `appkeys serve`.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The flags of `serve`, the default command.
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the GraphQL API (the default).
    Serve(Box<Settings>),
    /// Run pending migrations (and, on an empty database, create the first account) and exit.
    Migrate(DatabaseArgs),
    /// Print the GraphQL schema (SDL), as `schema.graphql` holds it.
    Schema,
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage the resource catalogue.
    #[command(subcommand)]
    Resource(ResourceCommand),
}

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Register a resource for your own APIs to require, e.g. `Orders.Read`.
    Register {
        /// Dot-separated id, e.g. `Orders.Read`.
        id: String,
        /// Human-readable name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account, its predefined roles and its owner.
    Create {
        /// The account name: 2–40 characters of a-z and 0-9, starting with a letter.
        name: String,
        /// The owner's email.
        #[arg(long)]
        owner_email: String,
        /// The owner's password; generated and printed once when omitted.
        #[arg(long, env = "APPKEYS_OWNER_PASSWORD", hide_env_values = true)]
        owner_password: Option<SecretString>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// What the commands other than `serve` need: the database, and the first account they create on an
/// empty one (the same flags and variables as `serve`'s).
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// SQLite or PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://appkeys.db?mode=rwc", hide_env_values = true)]
    pub database_url: SecretString,
    /// Account created on an empty database.
    #[arg(long, env = "APPKEYS_BOOTSTRAP_ACCOUNT", default_value = "main")]
    pub bootstrap_account: String,
    /// Email of the owner created on an empty database.
    #[arg(long, env = "APPKEYS_BOOTSTRAP_EMAIL", default_value = "admin@example.com")]
    pub bootstrap_email: String,
    /// Password of that owner; random and printed once when omitted.
    #[arg(long, env = "APPKEYS_BOOTSTRAP_PASSWORD", hide_env_values = true)]
    pub bootstrap_password: Option<SecretString>,
}

impl DatabaseArgs {
    /// Settings with these and every other flag at its default.
    pub fn into_settings(self) -> Settings {
        let mut settings = Settings::for_database(self.database_url.expose_secret());
        settings.bootstrap_account = self.bootstrap_account;
        settings.bootstrap_email = self.bootstrap_email;
        settings.bootstrap_password = self.bootstrap_password;
        settings
    }
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "APPKEYS_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// SQLite or PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://appkeys.db?mode=rwc", hide_env_values = true)]
    pub database_url: SecretString,
    /// First part of every generated key value.
    #[arg(long, env = "APPKEYS_KEY_PREFIX", default_value = "appkey")]
    pub key_prefix: String,
    /// Account created on an empty database.
    #[arg(long, env = "APPKEYS_BOOTSTRAP_ACCOUNT", default_value = "main")]
    pub bootstrap_account: String,
    /// Email of the owner created on an empty database.
    #[arg(long, env = "APPKEYS_BOOTSTRAP_EMAIL", default_value = "admin@example.com")]
    pub bootstrap_email: String,
    /// Password of that owner; random and printed once when omitted.
    #[arg(long, env = "APPKEYS_BOOTSTRAP_PASSWORD", global = true, hide_env_values = true)]
    pub bootstrap_password: Option<SecretString>,
    /// Maximum database connections in this process's pool.
    #[arg(long, env = "APPKEYS_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before it is answered `UNAVAILABLE`
    /// (503), in milliseconds: with the database away, requests fail this fast instead of piling up.
    #[arg(long, env = "APPKEYS_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2_000)]
    pub db_acquire_timeout_ms: u64,
    /// The longest one statement may run before the database cancels it (answered `UNAVAILABLE`),
    /// in milliseconds: PostgreSQL's `statement_timeout` on the pool's connections (not on
    /// migrations, nor on exports, which stream as long as the client reads); on SQLite, the longest
    /// a write waits for the file's lock.
    #[arg(long, env = "APPKEYS_DB_STATEMENT_TIMEOUT_MS", default_value_t = 5_000)]
    pub db_statement_timeout_ms: u64,
    /// How long a stop (SIGTERM, Ctrl-C) may take, in seconds: requests in flight finish, the last
    /// uses are written and the pool closes within it; whatever could not (the database away) is
    /// logged and given up, so a replica always stops.
    #[arg(long, env = "APPKEYS_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// SQLite only: how much of the database file each connection reads through a memory map
    /// (MiB; 0 turns it off). Reads then cost no system call per page; the mapped pages are the
    /// kernel's page cache, shared, and show in the process's resident size as file pages.
    #[arg(long, env = "APPKEYS_SQLITE_MMAP_MIB", default_value_t = 256)]
    pub sqlite_mmap_mib: u64,
    /// Maximum argon2 verifications running at once. Each takes one core; each holds 19 MiB of
    /// working memory, allocated at start and reused, so this many × 19 MiB is resident from start.
    #[arg(long, env = "APPKEYS_MAX_CONCURRENT_LOGINS", default_value_t = 2)]
    pub max_concurrent_logins: usize,
    /// How long a user session lasts, in seconds.
    #[arg(long, env = "APPKEYS_SESSION_TTL_SECS", default_value_t = 86_400)]
    pub session_ttl_secs: i64,
    /// Header from which `GET /auth` reads the account a request acts on (a gateway may name it its way).
    #[arg(long, env = "APPKEYS_AUTH_ACCOUNT_HEADER", default_value = "x-account")]
    pub auth_account_header: String,
    /// Let user sessions (`Authorization: Bearer aks_…`) pass `GET /auth` too; by default only
    /// application keys do, as gateways guard APIs for machines.
    #[arg(long, env = "APPKEYS_AUTH_ALLOW_SESSIONS")]
    pub auth_allow_sessions: bool,
    /// Turn GraphQL introspection off (production).
    #[arg(long, env = "APPKEYS_NO_INTROSPECTION")]
    pub no_introspection: bool,
    /// Do not serve GraphiQL at `/` (production).
    #[arg(long, env = "APPKEYS_NO_GRAPHIQL")]
    pub no_graphiql: bool,
    /// Origins allowed to call the API from a browser (CORS), comma-separated; none by default.
    #[arg(long, env = "APPKEYS_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Deepest allowed query nesting.
    #[arg(long, env = "APPKEYS_MAX_DEPTH", default_value_t = 15)]
    pub max_depth: usize,
    /// Highest allowed query complexity (one point per field; lists count their page size).
    #[arg(long, env = "APPKEYS_MAX_COMPLEXITY", default_value_t = 2_000)]
    pub max_complexity: usize,
    /// Most aliases allowed in one query document.
    #[arg(long, env = "APPKEYS_MAX_ALIASES", default_value_t = 30)]
    pub max_aliases: usize,
    /// Most directives allowed on one field.
    #[arg(long, env = "APPKEYS_MAX_DIRECTIVES", default_value_t = 5)]
    pub max_directives: usize,
    /// Most operations in one batched request.
    #[arg(long, env = "APPKEYS_MAX_BATCH", default_value_t = 10)]
    pub max_batch: usize,
    /// Largest request body, in bytes (413 beyond).
    #[arg(long, env = "APPKEYS_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Failed logins allowed per account and email per minute (and 5 times as many per client IP);
    /// failed key authentications allowed per key per minute (and 5 times as many per client IP).
    #[arg(long, env = "APPKEYS_FAILURES_PER_MINUTE", default_value_t = 10)]
    pub failures_per_minute: u32,
    /// How often noted key uses are written (each key at most once per interval, and at shutdown),
    /// in seconds; 0 turns last-use tracking off.
    #[arg(long, env = "APPKEYS_LAST_USED_FLUSH_SECS", default_value_t = 60)]
    pub last_used_flush_secs: u64,
    /// How often the counted decisions about keys (usage) are written, in seconds (each replica
    /// adds its own; a graceful stop writes the rest).
    #[arg(long, env = "APPKEYS_USAGE_FLUSH_SECS", default_value_t = 60)]
    pub usage_flush_secs: u64,
    /// How long daily usage points are kept, in days (hourly points: 35 days; each flush adds to
    /// an hour and to its day).
    #[arg(long, env = "APPKEYS_USAGE_RETENTION_DAYS", default_value_t = 400)]
    pub usage_retention_days: u32,
    /// How often the sweeper deactivates keys unused for longer than their account allows, in seconds.
    #[arg(long, env = "APPKEYS_SWEEP_INTERVAL_SECS", default_value_t = 300)]
    pub sweep_interval_secs: u64,
    /// Gateways and proxies (IP addresses or CIDR ranges, comma-separated) whose `X-Forwarded-For`
    /// is believed: the client is then the nearest address in it that is not such a proxy. None by
    /// default: the client is the peer address.
    #[arg(long, env = "APPKEYS_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Redis (`redis://host:6379`) through which every replica shares one budget per rate limit.
    /// Without it each replica keeps its own (N replicas admit up to N × a limit). When Redis does
    /// not answer, replicas fall back to their own budgets until it does.
    #[arg(long, env = "APPKEYS_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretString>,
    /// GitHub secret scanning's public keys: a file, or an `https://` URL (GitHub's is
    /// `https://api.github.com/meta/public_keys/secret_scanning`), in GitHub's
    /// `{"public_keys":[{"key_identifier","key","is_current"}]}` shape. Turns on
    /// `POST /secret-scanning/github`, which revokes the tokens GitHub finds in public (off: 404).
    #[arg(long, env = "APPKEYS_GITHUB_SCANNING_KEYS")]
    pub github_scanning_keys: Option<String>,
    /// Serve `GET /metrics` (Prometheus) on this address instead of on `--bind`.
    #[arg(long, env = "APPKEYS_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// The key (64 hex characters, 32 bytes) that encrypts webhook signing secrets at rest. Without
    /// it, a key generated once and kept in the database is used, so a copy of the database alone
    /// can sign; set it in production (the same on every replica).
    #[arg(long, env = "APPKEYS_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<SecretString>,
    /// Allow webhook endpoints on loopback, private, link-local and metadata addresses (tests,
    /// receivers inside your own network).
    #[arg(long, env = "APPKEYS_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Most webhook deliveries in flight at once on this replica.
    #[arg(long, env = "APPKEYS_WEBHOOK_CONCURRENCY", default_value_t = 8)]
    pub webhook_concurrency: usize,
    /// How long key events and finished webhook deliveries are kept, in days (pending deliveries
    /// are kept until they finish).
    #[arg(long, env = "APPKEYS_EVENT_RETENTION_DAYS", default_value_t = 30)]
    pub event_retention_days: u32,
    /// How long one webhook delivery may take (connecting, sending, the receiver's answer), in seconds.
    #[arg(long, env = "APPKEYS_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_timeout_secs: u64,
}

/// A proxy address: a CIDR range, or one address (a range of one).
fn parse_proxy(raw: &str) -> Result<ipnet::IpNet, String> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{raw:?} is neither an IP address nor a CIDR range"))
}

impl Settings {
    /// `--db-acquire-timeout-ms` (at least 1 ms).
    pub fn db_acquire_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.db_acquire_timeout_ms.max(1))
    }

    /// `--db-statement-timeout-ms` (at least 1 ms).
    pub fn db_statement_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.db_statement_timeout_ms.max(1))
    }

    /// The longest a request's handler may take before it is answered `UNAVAILABLE`: a connection's
    /// wait and one statement's limit, and a second more. It bounds what no database timeout can, a
    /// connection whose packets go nowhere (the database's network cut without a reset).
    pub fn request_deadline(&self) -> std::time::Duration {
        self.db_acquire_timeout() + self.db_statement_timeout() + std::time::Duration::from_secs(1)
    }

    /// Settings for tests and embedding: defaults, with this database.
    pub fn for_database(database_url: &str) -> Self {
        Cli::parse_from(["appkeys", "--database-url", database_url]).settings
    }
}
