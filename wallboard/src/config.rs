//! The wallboard's settings: command-line flags, each with an environment
//! variable as fallback (flags win), parsed and checked once at start.

use std::net::SocketAddr;

use clap::Parser;

/// A live wallboard for mod_callcenter: reads mod_cc_events' state mirror
/// from Redis, follows its stream, and pushes every change to browsers.
#[derive(Parser, Clone, Debug)]
#[command(name = "cc-wallboard", version, about)]
pub struct Config {
    /// Redis host (the one mod_cc_events writes to).
    #[arg(long, env = "CC_WALLBOARD_REDIS_HOST", default_value = "127.0.0.1")]
    pub redis_host: String,

    /// Redis port.
    #[arg(long, env = "CC_WALLBOARD_REDIS_PORT", default_value_t = 6379)]
    pub redis_port: u16,

    /// Redis ACL user (see README "Wallboard" for the minimal ACL).
    #[arg(long, env = "CC_WALLBOARD_REDIS_USER")]
    pub redis_user: Option<String>,

    /// Redis password. Prefer the environment variable: a flag shows in `ps`.
    #[arg(long, env = "CC_WALLBOARD_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// Redis database number (the module's `db` param).
    #[arg(long, env = "CC_WALLBOARD_REDIS_DB", default_value_t = 0)]
    pub redis_db: i64,

    /// The module's `state-prefix` (with `{host}` already filled in).
    #[arg(long, env = "CC_WALLBOARD_STATE_PREFIX", default_value = "cc_state")]
    pub state_prefix: String,

    /// The module's `stream` key: the mirror's change log.
    #[arg(long, env = "CC_WALLBOARD_STREAM", default_value = "callcenter_stream")]
    pub stream: String,

    /// Address the web server listens on. Loopback by default: put a reverse
    /// proxy with TLS in front to serve other machines.
    #[arg(long, env = "CC_WALLBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Require this token on every request, as `Authorization: Bearer <token>`
    /// or `?token=<token>`. Prefer the environment variable: a flag shows in `ps`.
    #[arg(long, env = "CC_WALLBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Config {
    /// Checks what clap cannot: every problem named with the flag to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.state_prefix.is_empty() {
            return Err(
                "--state-prefix is empty: give the module's state-prefix (default cc_state)".into(),
            );
        }
        if self.state_prefix.contains("{host}") {
            return Err(format!(
                "--state-prefix {} still holds {{host}}: give the prefix with the FreeSWITCH switchname filled in, as `cc_events state` prints it",
                self.state_prefix
            ));
        }
        if self.stream.is_empty() {
            return Err(
                "--stream is empty: give the module's stream param (e.g. callcenter_stream)".into(),
            );
        }
        if self.redis_db < 0 {
            return Err(format!(
                "--redis-db {} is negative: give the module's db (0 to 15 by default)",
                self.redis_db
            ));
        }
        if let Some(t) = &self.token {
            if t.trim().is_empty() || t.chars().any(char::is_control) {
                return Err("--token is empty or holds control characters: use a long random string (e.g. `openssl rand -hex 32`)".into());
            }
        }
        Ok(())
    }

    /// A line for the operator when the board is reachable from other
    /// machines without a token.
    pub fn exposure_warning(&self) -> Option<String> {
        (!self.listen.ip().is_loopback() && self.token.is_none()).then(|| {
            format!(
                "listening on {} without --token: anyone who can reach this address sees every agent and caller; set --token (or CC_WALLBOARD_TOKEN), or listen on 127.0.0.1 behind a reverse proxy",
                self.listen
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("cc-wallboard").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_listen_on_loopback_and_read_the_modules_default_keys() {
        let c = parse(&[]);
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.state_prefix, "cc_state");
        assert_eq!(c.stream, "callcenter_stream");
        assert_eq!(
            (c.redis_host.as_str(), c.redis_port, c.redis_db),
            ("127.0.0.1", 6379, 0)
        );
        assert!(c.token.is_none() && c.validate().is_ok() && c.exposure_warning().is_none());
    }

    #[test]
    fn errors_name_the_flag_to_change() {
        let mut c = parse(&["--state-prefix", "cc_state:{host}"]);
        assert!(c.validate().unwrap_err().contains("--state-prefix"));
        c = parse(&["--token", " "]);
        assert!(c.validate().unwrap_err().contains("--token"));
        c = parse(&["--redis-db=-1"]);
        assert!(c.validate().unwrap_err().contains("--redis-db"));
        c = parse(&["--listen", "0.0.0.0:8080"]);
        assert!(c.exposure_warning().unwrap().contains("--token"));
        c = parse(&["--listen", "0.0.0.0:8080", "--token", "s3cret"]);
        assert!(c.exposure_warning().is_none());
    }
}
