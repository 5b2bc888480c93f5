//! Test certificates made with the `openssl` CLI (the same commands README
//! gives operators), and a redis-server with a `tls-port` beside its plain
//! port: the plain port is for the test's subscriber and admin connection,
//! the TLS port for the module.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::redis::{free_port, temp_dir, RedisServer};

/// A CA, a server certificate for `localhost` and 127.0.0.1 signed by it (and
/// an expired copy), a client certificate signed by it, and a second,
/// unrelated CA.
pub struct Certs {
    pub dir: PathBuf,
}

/// Runs one `openssl` command line (arguments split on spaces) in `dir`.
fn openssl(dir: &Path, line: &str) {
    let args: Vec<&str> = line.split(' ').collect();
    let out = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("openssl not found: install Debian's openssl package (the TLS tests make their certificates with it)");
    assert!(
        out.status.success(),
        "openssl {line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// The commands README's TLS section gives operators, with test names.
    pub fn make() -> Certs {
        let dir = temp_dir("tls");
        let d = &dir;
        // The CA.
        openssl(d, "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=cc_events-test-CA -keyout ca.key -out ca.crt");
        // Redis's certificate: the names the module checks are its SANs.
        std::fs::write(
            d.join("redis.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout redis.key -out redis.csr",
        );
        openssl(d, "x509 -req -days 2 -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial -extfile redis.ext -out redis.crt");
        // The same, already expired (-days -1 puts notAfter before notBefore).
        openssl(d, "x509 -req -days -1 -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial -extfile redis.ext -out expired.crt");
        // A cluster node's certificate: the cluster bus (tls-cluster yes)
        // always asks the connecting node for a certificate, so it must be
        // good for clientAuth as well.
        std::fs::write(
            d.join("node.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        openssl(d, "x509 -req -days 2 -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial -extfile node.ext -out node.crt");
        // The module's client certificate, for tls-auth-clients yes.
        std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        openssl(d, "req -newkey rsa:2048 -nodes -subj /CN=mod_cc_events -keyout client.key -out client.csr");
        openssl(d, "x509 -req -days 2 -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -extfile client.ext -out client.crt");
        // A CA that signed nothing here: the wrong tls-ca-file.
        openssl(d, "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=some-other-CA -keyout other-ca.key -out other-ca.crt");
        Certs { dir }
    }

    /// The path of one of the files, as a config value.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server with TLS on the returned port, serving `cert_file` (with
/// Redis's key, under the test CA) and `tls-auth-clients` set to
/// `auth_clients`; plain TCP on `plain_port` (0: none). `extra` arguments go
/// before the TLS ones.
pub fn redis_tls_server(
    certs: &Certs,
    plain_port: u16,
    cert_file: &str,
    auth_clients: &str,
    extra: &[&str],
) -> (RedisServer, u16) {
    let tls_port = free_port();
    let (cert, key, ca) = (
        certs.path(cert_file),
        certs.path("redis.key"),
        certs.path("ca.crt"),
    );
    let port = tls_port.to_string();
    let mut args = extra.to_vec();
    args.extend([
        "--tls-port",
        &port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        auth_clients,
    ]);
    (RedisServer::start_with(plain_port, &args), tls_port)
}

/// A redis-server answering plain TCP on `redis.port` and TLS on the returned
/// port, with `tls-auth-clients` set to `auth_clients` (`no`, `optional`, `yes`).
pub fn redis_with_tls(certs: &Certs, auth_clients: &str) -> (RedisServer, u16) {
    redis_tls_server(certs, free_port(), "redis.crt", auth_clients, &[])
}

/// A redis-server that listens on TCP only on the returned TLS port (no plain
/// port: `redis.port` is 0); the test's own connections go through its Unix
/// socket (`redis.url()`, `redis.connection()`).
pub fn redis_tls_only(certs: &Certs) -> (RedisServer, u16) {
    redis_tls_server(certs, 0, "redis.crt", "no", &[])
}
