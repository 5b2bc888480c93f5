//! Typed settings parsed once from `cc_events.conf` params. Pure: no FreeSWITCH here.

use std::fmt;
use std::time::Duration;

use crate::catalogue::{self, EventSettings, Selection};
use crate::format;
use crate::routes::{Routes, Template};
use crate::state::StateSettings;

/// Where and how to reach Redis. The password is kept out of `Display`/`Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    /// One server (`host`, `port`), or found through Sentinel, or a Cluster.
    pub topology: Topology,
    /// None: plain TCP.
    pub tls: Option<TlsSettings>,
}

/// How the module finds the Redis it writes to.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Topology {
    #[default]
    Standalone,
    Sentinel(SentinelSettings),
    Cluster(ClusterSettings),
}

/// `sentinels`, `sentinel-master`, `sentinel-username`, `sentinel-password`.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelSettings {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for SentinelSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "master '{}' via {}", self.master, addrs(&self.sentinels))
    }
}

/// `cluster=true`, `cluster-nodes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Seed nodes; the rest is discovered.
    pub nodes: Vec<(String, u16)>,
}

/// `tls=true`, `tls-ca-file`, `tls-cert-file`, `tls-key-file`,
/// `tls-verify-hostname`, `tls-server-name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM CA bundle the server's certificate must chain to.
    pub ca_file: String,
    /// A client certificate and its key (PEM), for `tls-auth-clients`.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Check the certificate names the host (on by default).
    pub verify_hostname: bool,
    /// The name to check instead of the host (e.g. connecting by IP).
    pub server_name: Option<String>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
            cert_file: None,
            key_file: None,
            verify_hostname: true,
            server_name: None,
        }
    }
}

/// `h1:p1,h2:p2` for descriptions.
pub fn addrs(list: &[(String, u16)]) -> String {
    list.iter()
        .map(|(h, p)| addr(h, *p))
        .collect::<Vec<_>>()
        .join(",")
}

/// `host:port`, with an IPv6 address in brackets as it is written in the config.
pub fn addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl RedisSettings {
    /// `host:port db N [user U]`: what status and the load line show. Never the password.
    pub fn describe(&self) -> String {
        let head = match &self.topology {
            Topology::Standalone => format!("{}:{} db {}", self.host, self.port, self.db),
            Topology::Sentinel(st) => format!("sentinel {st:?} db {}", self.db),
            Topology::Cluster(c) => format!("cluster {}", addrs(&c.nodes)),
        };
        head + &self.describe_login()
    }

    /// ` tls user U (password set)`: what follows the address in a description.
    pub fn describe_login(&self) -> String {
        let mut s = String::new();
        if self.tls.is_some() {
            s.push_str(" tls");
        }
        if let Some(user) = &self.username {
            s.push_str(&format!(" user {user}"));
        }
        if self.password.is_some() {
            s.push_str(" (password set)");
        }
        s
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub redis: RedisSettings,
    pub routes: Routes,
    pub queue_size: usize,
    pub batch_size: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub shutdown_flush: Duration,
    /// PING after this long without traffic; zero turns it off.
    pub idle_ping: Duration,
    pub events: EventSettings,
    pub format: format::Kind,
    /// The live state mirror; None: off.
    pub state: Option<StateSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            redis: RedisSettings {
                host: "127.0.0.1".into(),
                port: 6379,
                username: None,
                password: None,
                db: 0,
                connect_timeout: Duration::from_millis(1000),
                io_timeout: Duration::from_millis(1000),
                topology: Topology::Standalone,
                tls: None,
            },
            routes: Routes::default(),
            queue_size: 10_000,
            batch_size: 256,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_millis(1000),
            shutdown_flush: Duration::from_millis(2000),
            idle_ping: Duration::from_millis(1000),
            events: EventSettings::default(),
            format: format::Kind::Seed,
            state: None,
        }
    }
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "redis {} {} format {} events {} queue-size {} batch-size {} connect-timeout-ms {} io-timeout-ms {} reconnect {}..{} ms shutdown-flush-ms {} idle-ping-ms {}",
            self.redis.describe(),
            self.routes.describe(),
            self.format.as_str(),
            match &self.events.selection {
                Selection::Seed => "seed".to_string(),
                Selection::All => "all".to_string(),
                Selection::List(l) => l.join(","),
            },
            self.queue_size,
            self.batch_size,
            self.redis.connect_timeout.as_millis(),
            self.redis.io_timeout.as_millis(),
            self.reconnect_min.as_millis(),
            self.reconnect_max.as_millis(),
            self.shutdown_flush.as_millis(),
            self.idle_ping.as_millis(),
        )?;
        if let Some(t) = &self.redis.tls {
            write!(f, " tls-ca-file {}", t.ca_file)?;
            if let Some(c) = &t.cert_file {
                write!(f, " tls-cert-file {c}")?;
            }
            if let Some(n) = &t.server_name {
                write!(f, " tls-server-name {n}")?;
            }
            if !t.verify_hostname {
                f.write_str(" tls-verify-hostname false")?;
            }
        }
        if let Some(st) = &self.state {
            write!(
                f,
                " state on prefix '{}' refresh {} s",
                st.prefix,
                st.refresh.as_secs()
            )?;
        }
        Ok(())
    }
}

impl Settings {
    /// What is published and how, from these settings.
    pub fn catalogue(&self) -> crate::catalogue::Catalogue {
        crate::catalogue::Catalogue::build(&self.events, self.format, self.routes.clone())
    }
}

/// A param the operator must change. Display is the whole log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub param: String,
    pub value: String,
    pub allowed: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cc_events.conf: param '{}' has invalid value '{}': {}",
            self.param, self.value, self.allowed
        )
    }
}

impl std::error::Error for ConfigError {}

/// Parsed settings plus anything the operator should hear about but that does not stop the load.
#[derive(Debug)]
pub struct Parsed {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

/// Every param name this version understands, for the unknown-param warning.
pub const PARAMS: &[&str] = &[
    "host",
    "port",
    "username",
    "password",
    "db",
    "channel",
    "extra-channel",
    "stream",
    "stream-maxlen",
    "queue-size",
    "batch-size",
    "connect-timeout-ms",
    "io-timeout-ms",
    "reconnect-min-ms",
    "reconnect-max-ms",
    "shutdown-flush-ms",
    "idle-ping-ms",
    "events",
    "format",
    "variables",
    "name-<action>",
    "variables-<action>",
    "state",
    "state-prefix",
    "state-refresh-s",
    "state-variables",
    "sentinels",
    "sentinel-master",
    "sentinel-username",
    "sentinel-password",
    "cluster",
    "cluster-nodes",
    "sharded-pubsub",
    "tls",
    "tls-ca-file",
    "tls-cert-file",
    "tls-key-file",
    "tls-verify-hostname",
    "tls-server-name",
];

/// A comma-separated list, trimmed, without empty items.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A channel or stream name, with placeholders (and, in a Redis Cluster, hash
/// tags); empty turns it off.
fn template(param: &str, value: &str, hash_tags: bool) -> Result<Option<Template>, ConfigError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.chars().any(char::is_whitespace) {
        return Err(err(
            param,
            value,
            "a channel or key name must not contain spaces",
        ));
    }
    Template::parse_with(v, hash_tags)
        .map(Some)
        .map_err(|why| err(param, value, &why))
}

fn boolean(param: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" | "yes" | "on" => Ok(true),
        "false" | "no" | "off" | "" => Ok(false),
        _ => Err(err(param, value, "use true or false")),
    }
}

/// `host:port,host:port`, at least one.
fn host_ports(param: &str, value: &str) -> Result<Vec<(String, u16)>, ConfigError> {
    let items = list(value);
    if items.is_empty() {
        return Err(err(
            param,
            value,
            "give host:port pairs separated by commas",
        ));
    }
    items
        .iter()
        .map(|item| {
            let (h, p) = item.rsplit_once(':').ok_or_else(|| {
                err(
                    param,
                    value,
                    &format!("'{item}' has no port: write host:port"),
                )
            })?;
            let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                err(
                    param,
                    value,
                    &format!("'{item}': the port must be 1..65535"),
                )
            })?;
            let host = h.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(err(param, value, &format!("'{item}' has no host")));
            }
            Ok((host.to_string(), port))
        })
        .collect()
}

/// Every `{` closed before the next: `{host}` and any `{tag}` (a Redis Cluster
/// hash tag, kept as written) are both well formed.
fn balanced_braces(prefix: &str) -> bool {
    let mut rest = prefix;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return false;
        };
        rest = &rest[open + close + 1..];
    }
    !rest.contains('}')
}

/// In a Redis Cluster a batch's state call (one EVALSHA) writes the stream
/// and every state key, and Redis runs it only when they all hash to one
/// slot: the state prefix must carry a hash tag, and the stream the same one.
fn same_slot(prefix: &str, stream: Option<&Template>) -> Result<(), ConfigError> {
    let shape = prefix.replace("{host}", "<host>");
    let Some(tag) = crate::routes::hash_tag(&shape) else {
        return Err(err(
            "state-prefix",
            prefix,
            "with cluster=true the state's keys must share one slot: put a hash tag in state-prefix, e.g. {cc}:state (and the same tag in stream, e.g. {cc}:stream)",
        ));
    };
    let Some(stream) = stream else {
        return Ok(());
    };
    if stream.hash_tag().as_deref() != Some(tag) {
        return Err(err(
            "stream",
            stream.as_str(),
            &format!(
                "with cluster=true and state=true each batch of events writes the stream and the state keys in one script call, which Redis Cluster runs only when they hash to one slot: give stream the same hash tag as state-prefix, e.g. {{{tag}}}:stream"
            ),
        ));
    }
    Ok(())
}

/// The action a per-event param names (`name-agent-offering`), checked.
fn action_param<'a>(param: &str, action: &'a str, value: &str) -> Result<&'a str, ConfigError> {
    match catalogue::find(action) {
        Some(_) => Ok(action),
        None => Err(err(
            param,
            value,
            &format!(
                "'{action}' is not a mod_callcenter CC-Action; use one of: {}",
                catalogue::action_names()
            ),
        )),
    }
}

fn variables(param: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let vars = list(value);
    if let Some(bad) = vars.iter().find(|v| {
        !v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        return Err(err(
            param,
            value,
            &format!("'{bad}' is not a channel variable name: use letters, digits, '_' and '-', separated by commas"),
        ));
    }
    Ok(vars)
}

fn err(param: &str, value: &str, allowed: &str) -> ConfigError {
    ConfigError {
        param: param.into(),
        value: value.into(),
        allowed: allowed.into(),
    }
}

fn int_in<T>(param: &str, value: &str, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let allowed = format!("use a whole number from {min} to {max}");
    match value.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(err(param, value, &allowed)),
    }
}

fn millis(param: &str, value: &str, min: u64, max: u64) -> Result<Duration, ConfigError> {
    int_in(param, value, min, max).map(Duration::from_millis)
}

fn non_empty(param: &str, value: &str, what: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(err(param, value, what));
    }
    Ok(v.to_owned())
}

impl Settings {
    /// Builds settings from `<param name value>` pairs in file order; a later
    /// param overrides an earlier one of the same name, as in other FreeSWITCH modules.
    pub fn from_params<'a, I>(params: I) -> Result<Parsed, ConfigError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut s = Settings::default();
        let mut warnings = Vec::new();
        let mut state_on = false;
        let mut state = StateSettings::default();
        let mut sentinel = SentinelSettings {
            sentinels: Vec::new(),
            master: String::new(),
            username: None,
            password: None,
        };
        let mut address_set = false;
        let mut cluster_on = false;
        let mut cluster_nodes = Vec::new();
        let mut tls_on = false;
        let mut tls = TlsSettings::default();
        let mut names = Vec::new();
        for (name, value) in params {
            match name {
                "sentinels" => sentinel.sentinels = host_ports(name, value)?,
                "sentinel-master" => {
                    sentinel.master = non_empty(
                        name,
                        value,
                        "give the master's name as Sentinel knows it (sentinel monitor <name> ...)",
                    )?
                }
                "sentinel-username" => {
                    sentinel.username = Some(value.to_owned()).filter(|v| !v.is_empty())
                }
                "sentinel-password" => {
                    sentinel.password = Some(value.to_owned()).filter(|v| !v.is_empty())
                }
                "cluster" => cluster_on = boolean(name, value)?,
                "cluster-nodes" => cluster_nodes = host_ports(name, value)?,
                "sharded-pubsub" => s.routes.sharded = boolean(name, value)?,
                "tls" => tls_on = boolean(name, value)?,
                "tls-ca-file" => {
                    tls.ca_file = non_empty(name, value, "give the path of a PEM CA bundle")?
                }
                "tls-cert-file" => {
                    tls.cert_file = Some(value.trim().to_owned()).filter(|v| !v.is_empty())
                }
                "tls-key-file" => {
                    tls.key_file = Some(value.trim().to_owned()).filter(|v| !v.is_empty())
                }
                "tls-verify-hostname" => tls.verify_hostname = boolean(name, value)?,
                "tls-server-name" => {
                    tls.server_name = Some(value.trim().to_owned()).filter(|v| !v.is_empty())
                }
                "state" => state_on = boolean(name, value)?,
                "state-prefix" => {
                    let v = non_empty(
                        name,
                        value,
                        "give a key prefix such as cc_state or {cc}:{host}",
                    )?;
                    if v.chars().any(char::is_whitespace) {
                        return Err(err(name, value, "a key prefix must not contain spaces"));
                    }
                    if v.replace("{host}", "").contains(['{', '}']) && !balanced_braces(&v) {
                        return Err(err(
                            name,
                            value,
                            "the only placeholder is {host}; a Redis Cluster hash tag such as {cc} is kept as it is",
                        ));
                    }
                    state.prefix = v;
                }
                "state-refresh-s" => {
                    state.refresh = Duration::from_secs(int_in(name, value, 0u64, 86_400)?)
                }
                "state-variables" => state.variables = variables(name, value)?,
                "host" => {
                    s.redis.host = non_empty(name, value, "give a host name or IP address")?;
                    address_set = true;
                }
                "port" => {
                    s.redis.port = int_in(name, value, 1u16, 65535)?;
                    address_set = true;
                }
                "username" => s.redis.username = Some(value.to_owned()).filter(|v| !v.is_empty()),
                "password" => s.redis.password = Some(value.to_owned()).filter(|v| !v.is_empty()),
                "db" => s.redis.db = int_in(name, value, 0i64, 1_000_000)?,
                // Parsed once cluster is known: it decides what `{...}` may be.
                "channel" | "extra-channel" | "stream" => names.push((name, value)),
                "stream-maxlen" => {
                    s.routes.stream_maxlen = int_in(name, value, 1u64, 1_000_000_000)?
                }
                "queue-size" => s.queue_size = int_in(name, value, 1usize, 1_000_000)?,
                "batch-size" => s.batch_size = int_in(name, value, 1usize, 10_000)?,
                "connect-timeout-ms" => s.redis.connect_timeout = millis(name, value, 10, 60_000)?,
                "io-timeout-ms" => s.redis.io_timeout = millis(name, value, 10, 60_000)?,
                "reconnect-min-ms" => s.reconnect_min = millis(name, value, 1, 60_000)?,
                "reconnect-max-ms" => s.reconnect_max = millis(name, value, 1, 600_000)?,
                "shutdown-flush-ms" => s.shutdown_flush = millis(name, value, 0, 60_000)?,
                "idle-ping-ms" => s.idle_ping = millis(name, value, 0, 3_600_000)?,
                "events" => {
                    s.events.selection = match value.trim() {
                        "" | "seed" => Selection::Seed,
                        "all" => Selection::All,
                        v => {
                            let actions = list(v);
                            if let Some(bad) = actions.iter().find(|a| {
                                catalogue::find(a).is_none() && *a != "all" && *a != "seed"
                            }) {
                                return Err(err(
                                    name,
                                    value,
                                    &format!(
                                        "'{bad}' is not a mod_callcenter CC-Action; use seed, all, or a comma-separated list of: {}",
                                        catalogue::action_names()
                                    ),
                                ));
                            }
                            Selection::List(actions)
                        }
                    }
                }
                "format" => {
                    s.format = format::Kind::parse(value.trim())
                        .ok_or_else(|| err(name, value, "use seed or envelope"))?
                }
                "variables" => s.events.variables = Some(variables(name, value)?),
                other if other.starts_with("name-") => {
                    let action = action_param(name, &other["name-".len()..], value)?;
                    let published =
                        non_empty(name, value, "give the name to publish this event under")?;
                    s.events.renames.push((action.to_owned(), published));
                }
                other if other.starts_with("variables-") => {
                    let action = action_param(name, &other["variables-".len()..], value)?;
                    let vars = variables(name, value)?;
                    s.events.variables_for.push((action.to_owned(), vars));
                }
                other => warnings.push(format!(
                    "cc_events.conf: unknown param '{other}' ignored; known params are: {}",
                    PARAMS.join(", ")
                )),
            }
        }
        for (name, value) in names {
            let parsed = template(name, value, cluster_on)?;
            match name {
                "channel" => s.routes.channel = parsed,
                "stream" => s.routes.stream = parsed,
                _ => {
                    s.routes.extra_channel = parsed
                        .map(|t| {
                            if t.is_fixed() {
                                Ok(t.as_str().to_owned())
                            } else {
                                Err(err(
                                    name,
                                    value,
                                    "the extra channel is fixed: no placeholders",
                                ))
                            }
                        })
                        .transpose()?
                }
            }
        }
        if s.routes.channel.is_none()
            && s.routes.extra_channel.is_none()
            && s.routes.stream.is_none()
        {
            return Err(err(
                "channel",
                "",
                "with an empty channel, set stream (or extra-channel): otherwise nothing is published",
            ));
        }
        if !sentinel.sentinels.is_empty() || !sentinel.master.is_empty() {
            if sentinel.sentinels.is_empty() || sentinel.master.is_empty() {
                return Err(err(
                    if sentinel.master.is_empty() {
                        "sentinel-master"
                    } else {
                        "sentinels"
                    },
                    "",
                    "Sentinel needs both sentinels (host:port,...) and sentinel-master",
                ));
            }
            if cluster_on {
                return Err(err(
                    "cluster",
                    "true",
                    "use either Sentinel (sentinels) or cluster=true, not both",
                ));
            }
            if sentinel.username.is_some() && sentinel.password.is_none() {
                return Err(err(
                    "sentinel-username",
                    sentinel.username.as_deref().unwrap_or_default(),
                    "a sentinel username needs sentinel-password",
                ));
            }
            if address_set {
                warnings.push("cc_events.conf: host and port are ignored with sentinels: the sentinels name the master".to_string());
            }
            s.redis.topology = Topology::Sentinel(sentinel);
        }
        if cluster_on {
            if s.redis.db != 0 {
                return Err(err(
                    "db",
                    &s.redis.db.to_string(),
                    "Redis Cluster has only db 0",
                ));
            }
            if cluster_nodes.is_empty() {
                cluster_nodes.push((s.redis.host.clone(), s.redis.port));
            }
            s.redis.topology = Topology::Cluster(ClusterSettings {
                nodes: cluster_nodes,
            });
        } else if !cluster_nodes.is_empty() {
            warnings
                .push("cc_events.conf: cluster-nodes is ignored without cluster=true".to_string());
        }
        if s.routes.sharded && !cluster_on {
            warnings.push("cc_events.conf: sharded-pubsub=true without cluster=true: SPUBLISH on one server works like PUBLISH".to_string());
        }
        if tls_on {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(err(
                    if tls.cert_file.is_some() {
                        "tls-key-file"
                    } else {
                        "tls-cert-file"
                    },
                    "",
                    "a client certificate needs both tls-cert-file and tls-key-file",
                ));
            }
            s.redis.tls = Some(tls);
        }
        if state_on {
            if let Some(st) = &s.routes.stream {
                let varying = ["{queue}", "{agent}", "{event}", "{action}"];
                if varying.iter().any(|p| st.as_str().contains(p)) {
                    return Err(err(
                        "stream",
                        st.as_str(),
                        "with state=true the stream is the state's change log and must be one key: only {host} may vary",
                    ));
                }
            }
            if cluster_on {
                same_slot(&state.prefix, s.routes.stream.as_ref())?;
            }
            s.events.state_vars = Some(state.variables.clone());
            s.state = Some(state);
        }
        if s.redis.username.is_some() && s.redis.password.is_none() {
            return Err(err(
                "username",
                s.redis.username.as_deref().unwrap_or_default(),
                "a username needs a password: add <param name=\"password\" value=\"...\"/> (Redis authenticates a user only with its password), or remove username",
            ));
        }
        if s.reconnect_min > s.reconnect_max {
            return Err(err(
                "reconnect-min-ms",
                &s.reconnect_min.as_millis().to_string(),
                &format!(
                    "must not exceed reconnect-max-ms ({})",
                    s.reconnect_max.as_millis()
                ),
            ));
        }
        Ok(Parsed {
            settings: s,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_and_tls_params_are_checked_before_anything_else() {
        let e = Settings::from_params([("sentinels", "10.0.0.1")]).unwrap_err();
        assert!(e.to_string().contains("'10.0.0.1' has no port"), "{e}");
        let e = Settings::from_params([("sentinels", "10.0.0.1:26379")]).unwrap_err();
        assert!(e.to_string().contains("both sentinels"), "{e}");
        let e = Settings::from_params([("cluster", "true"), ("db", "2")]).unwrap_err();
        assert_eq!(e.param, "db");
        let e = Settings::from_params([("tls", "true"), ("tls-cert-file", "/c.pem")]).unwrap_err();
        assert_eq!(e.param, "tls-key-file");
        let s = Settings::from_params([
            ("sentinels", "10.0.0.1:26379, sentinel-b:26380"),
            ("sentinel-master", "mymaster"),
            ("sentinel-username", "watcher"),
            ("sentinel-password", "hunter2"),
            ("password", "data-pw"),
        ])
        .unwrap()
        .settings;
        let Topology::Sentinel(st) = &s.redis.topology else {
            panic!("{:?}", s.redis.topology)
        };
        assert_eq!(
            st.sentinels,
            [
                ("10.0.0.1".to_string(), 26379),
                ("sentinel-b".into(), 26380)
            ]
        );
        assert_eq!(st.master, "mymaster");
        assert_eq!(st.username.as_deref(), Some("watcher"));
        assert_eq!(st.password.as_deref(), Some("hunter2"));
        let shown = format!("{s} {s:?}");
        assert!(shown.contains("redis sentinel master 'mymaster' via 10.0.0.1:26379,sentinel-b:26380 db 0 (password set)"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("data-pw"),
            "{shown}"
        );
        let p = Settings::from_params([
            ("sentinels", "10.0.0.1:26379"),
            ("sentinel-master", "m"),
            ("port", "6380"),
        ])
        .unwrap();
        assert_eq!(
            p.warnings,
            ["cc_events.conf: host and port are ignored with sentinels: the sentinels name the master"]
        );
        let e = Settings::from_params([
            ("sentinels", "10.0.0.1:26379"),
            ("sentinel-master", "m"),
            ("sentinel-username", "watcher"),
        ])
        .unwrap_err();
        assert_eq!(e.param, "sentinel-username");
        let e = Settings::from_params([("tls", "true"), ("tls-ca-file", "")]).unwrap_err();
        assert_eq!(e.param, "tls-ca-file");
        let p = Settings::from_params([
            ("cluster", "true"),
            ("cluster-nodes", "10.0.0.1:7000,[::1]:7001"),
        ])
        .unwrap();
        assert_eq!(
            p.settings.redis.topology,
            Topology::Cluster(ClusterSettings {
                nodes: vec![("10.0.0.1".into(), 7000), ("::1".into(), 7001)]
            })
        );
        // TLS applies to every node connection of the cluster.
        let p = Settings::from_params([("cluster", "true"), ("tls", "true")]).unwrap();
        assert!(p.settings.redis.tls.is_some());
        assert_eq!(p.settings.redis.describe(), "cluster 127.0.0.1:6379 tls");
        // Without cluster-nodes, host and port are the one seed.
        let p = Settings::from_params([("cluster", "true"), ("port", "7000")]).unwrap();
        assert_eq!(p.settings.redis.describe(), "cluster 127.0.0.1:7000");
        let p = Settings::from_params([("sharded-pubsub", "true")]).unwrap();
        assert!(p.settings.routes.sharded);
        assert!(p.warnings[0].contains("sharded-pubsub=true without cluster=true"));
    }

    #[test]
    fn tls_params_become_tls_settings_and_show_in_the_load_line() {
        let plain = Settings::from_params([("tls-server-name", "ignored")]).unwrap();
        assert!(plain.settings.redis.tls.is_none(), "tls-* without tls=true");
        let s = Settings::from_params([
            ("tls", "true"),
            ("tls-ca-file", "/etc/redis/ca.crt"),
            ("tls-cert-file", "/etc/redis/client.crt"),
            ("tls-key-file", "/etc/redis/client.key"),
            ("tls-verify-hostname", "false"),
            ("tls-server-name", "redis.example"),
        ])
        .unwrap()
        .settings;
        let t = s.redis.tls.as_ref().unwrap();
        assert_eq!(t.ca_file, "/etc/redis/ca.crt");
        assert_eq!(t.cert_file.as_deref(), Some("/etc/redis/client.crt"));
        assert_eq!(t.key_file.as_deref(), Some("/etc/redis/client.key"));
        assert!(!t.verify_hostname);
        assert_eq!(t.server_name.as_deref(), Some("redis.example"));
        assert_eq!(s.redis.describe(), "127.0.0.1:6379 db 0 tls");
        let line = s.to_string();
        assert!(line.contains(" tls-ca-file /etc/redis/ca.crt tls-cert-file /etc/redis/client.crt tls-server-name redis.example tls-verify-hostname false"), "{line}");
        assert!(
            !line.contains("client.key"),
            "the key's path is not needed in the line: {line}"
        );
        let d = Settings::from_params([("tls", "true")]).unwrap().settings;
        let t = d.redis.tls.unwrap();
        assert_eq!(t.ca_file, "/etc/ssl/certs/ca-certificates.crt");
        assert!(t.verify_hostname && t.server_name.is_none() && t.cert_file.is_none());
    }

    #[test]
    fn the_state_mirror_is_opt_in_and_its_stream_must_be_one_key() {
        let off = Settings::from_params([]).unwrap().settings;
        assert!(off.state.is_none() && off.events.state_vars.is_none());
        let on = Settings::from_params([
            ("state", "true"),
            ("state-prefix", "{cc}:{host}"),
            ("state-refresh-s", "0"),
            ("state-variables", "campaign_id"),
            ("stream", "cc_stream:{host}"),
        ])
        .unwrap()
        .settings;
        let st = on.state.as_ref().unwrap();
        assert_eq!(st.prefix, "{cc}:{host}");
        assert!(st.refresh.is_zero());
        assert_eq!(on.events.state_vars, Some(vec!["campaign_id".to_string()]));
        assert!(on
            .to_string()
            .contains("state on prefix '{cc}:{host}' refresh 0 s"));
        let e = Settings::from_params([("state", "true"), ("stream", "cc:{queue}")]).unwrap_err();
        assert_eq!(e.param, "stream");
        assert!(e.to_string().contains("only {host} may vary"), "{e}");
        // Without the mirror a templated stream is fine.
        assert!(Settings::from_params([("stream", "cc:{queue}")]).is_ok());
        let e = Settings::from_params([("state", "maybe")]).unwrap_err();
        assert!(e.to_string().contains("use true or false"));
        let e = Settings::from_params([("state-prefix", "cc state")]).unwrap_err();
        assert!(e.to_string().contains("spaces"));
        let e = Settings::from_params([("state-prefix", "cc}")]).unwrap_err();
        assert!(e.to_string().contains("{host}"), "{e}");
    }

    #[test]
    fn with_cluster_braces_that_are_not_placeholders_are_hash_tags() {
        // Without cluster=true an unknown {...} is a typo, wherever it is.
        let e = parse(&[("stream", "{cc}:stream")]).unwrap_err();
        assert_eq!(e.param, "stream");
        assert!(e.to_string().contains("needs cluster=true"), "{e}");
        // The param order does not matter: cluster may come last.
        let e = parse(&[
            ("channel", "{cc}:events"),
            ("extra-channel", "{cc}:all"),
            ("stream", "{cc}:stream:{queu}"),
            ("cluster", "true"),
        ])
        .unwrap();
        // A tag is not a typo with cluster=true.
        let r = e.settings.routes;
        assert_eq!(r.channel.unwrap().as_str(), "{cc}:events");
        assert_eq!(r.extra_channel.as_deref(), Some("{cc}:all"));
        assert_eq!(r.stream.unwrap().as_str(), "{cc}:stream:{queu}");
    }

    #[test]
    fn with_cluster_and_state_the_stream_and_the_state_share_a_hash_tag() {
        let cluster = [("cluster", "true"), ("state", "true")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut p = cluster.to_vec();
            p.extend_from_slice(extra);
            parse(&p)
        };
        let e = with(&[("state-prefix", "cc_state")]).unwrap_err();
        assert_eq!(e.param, "state-prefix");
        assert!(e.to_string().contains("hash tag"), "{e}");
        let e = with(&[("state-prefix", "{host}:state")]).unwrap_err();
        assert_eq!(e.param, "state-prefix", "a placeholder is not a tag");
        let e = with(&[("state-prefix", "{cc}:state"), ("stream", "cc_stream")]).unwrap_err();
        assert_eq!(e.param, "stream");
        assert!(e.to_string().contains("e.g. {cc}:stream"), "{e}");
        let e = with(&[("state-prefix", "{cc}:state"), ("stream", "{cd}:stream")]).unwrap_err();
        assert_eq!(e.param, "stream");
        // Matching tags (with {host} anywhere) pass these checks.
        for (prefix, stream) in [
            ("{cc}:state", "{cc}:stream"),
            ("{cc}:{host}", "{cc}:stream:{host}"),
            ("{host}:{cc}", "{cc}"),
        ] {
            let p = with(&[("state-prefix", prefix), ("stream", stream)])
                .unwrap_or_else(|e| panic!("{prefix} {stream}: {e}"));
            assert_eq!(p.settings.routes.stream.unwrap().as_str(), stream);
        }
    }

    fn parse(p: &[(&str, &str)]) -> Result<Parsed, ConfigError> {
        Settings::from_params(p.iter().copied())
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        let s = parse(&[]).unwrap().settings;
        assert_eq!(s.redis.host, "127.0.0.1");
        assert_eq!(s.redis.port, 6379);
        assert_eq!(s.redis.db, 0);
        assert_eq!(s.routes.channel.unwrap().as_str(), "callcenter_events");
        assert_eq!(s.shutdown_flush, Duration::from_secs(2));
        assert!(s.redis.password.is_none());
    }

    #[test]
    fn every_param_is_applied() {
        let s = parse(&[
            ("host", "redis.example"),
            ("port", "6380"),
            ("username", "fs"),
            ("password", "secret"),
            ("db", "3"),
            ("channel", "cc"),
            ("queue-size", "5"),
            ("batch-size", "7"),
            ("connect-timeout-ms", "250"),
            ("io-timeout-ms", "300"),
            ("reconnect-min-ms", "20"),
            ("reconnect-max-ms", "900"),
            ("shutdown-flush-ms", "0"),
            ("idle-ping-ms", "250"),
        ])
        .unwrap()
        .settings;
        assert_eq!(s.redis.host, "redis.example");
        assert_eq!(s.redis.port, 6380);
        assert_eq!(s.redis.username.as_deref(), Some("fs"));
        assert_eq!(s.redis.password.as_deref(), Some("secret"));
        assert_eq!(s.redis.db, 3);
        assert_eq!(s.routes.channel.as_ref().unwrap().as_str(), "cc");
        assert_eq!(s.queue_size, 5);
        assert_eq!(s.batch_size, 7);
        assert_eq!(s.redis.connect_timeout, Duration::from_millis(250));
        assert_eq!(s.redis.io_timeout, Duration::from_millis(300));
        assert_eq!(s.reconnect_min, Duration::from_millis(20));
        assert_eq!(s.reconnect_max, Duration::from_millis(900));
        assert_eq!(s.shutdown_flush, Duration::ZERO);
        assert_eq!(s.idle_ping, Duration::from_millis(250));
    }

    #[test]
    fn events_lists_may_start_from_all_or_seed() {
        let s = parse(&[("events", "all,agent-status-get")])
            .unwrap()
            .settings;
        let c = s.catalogue();
        assert_eq!(c.entries.len(), 14);
        assert!(c.lookup(b"agent-status-get").is_some());
        let e = parse(&[("events", "seed,agent-bogus")]).unwrap_err();
        assert!(e.to_string().contains("'agent-bogus'"), "{e}");
    }

    #[test]
    fn a_username_without_a_password_fails_the_load() {
        let e = parse(&[("username", "fs")]).unwrap_err();
        assert_eq!(e.param, "username");
        assert!(e.to_string().contains("needs a password"), "{e}");
        assert!(parse(&[("username", "fs"), ("password", "pw")]).is_ok());
    }

    #[test]
    fn invalid_values_name_the_param_and_what_is_allowed() {
        let e = parse(&[("port", "70000")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cc_events.conf: param 'port' has invalid value '70000': use a whole number from 1 to 65535"
        );
        assert_eq!(
            parse(&[("queue-size", "0")]).unwrap_err().param,
            "queue-size"
        );
        assert_eq!(parse(&[("db", "x")]).unwrap_err().param, "db");
        assert_eq!(parse(&[("host", " ")]).unwrap_err().param, "host");
        assert_eq!(parse(&[("channel", "a b")]).unwrap_err().param, "channel");
        let e = parse(&[("reconnect-min-ms", "500"), ("reconnect-max-ms", "100")]).unwrap_err();
        assert_eq!(e.param, "reconnect-min-ms");
    }

    #[test]
    fn unknown_params_warn_but_do_not_fail() {
        let p = parse(&[("hots", "x")]).unwrap();
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("'hots'"));
    }

    #[test]
    fn password_never_shows() {
        let s = parse(&[("password", "hunter2"), ("username", "u")])
            .unwrap()
            .settings;
        let shown = format!("{s} {s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("password set"));
    }

    #[test]
    fn empty_password_means_none() {
        let s = parse(&[("password", "")]).unwrap().settings;
        assert!(s.redis.password.is_none());
    }
}
