//! TLS to Redis with rustls, over the same non-blocking socket and the same
//! deadline-sliced waits as plain TCP (`net.rs`): a handshake is bounded by
//! `connect-timeout-ms`, reads and writes by `io-timeout-ms`, and all of them
//! by the shutdown deadline.
//!
//! Why rustls (with the ring provider): it is a maintained, memory-safe TLS
//! stack compiled into the module. OpenSSL would tie the module to the libssl
//! that FreeSWITCH itself loads: a module built against another OpenSSL
//! version than FreeSWITCH's would clash with it in one process, and an
//! OpenSSL upgrade could break the module. ring's symbols carry a version
//! prefix, so they cannot collide with FreeSWITCH's libssl/libcrypto either.
//!
//! Every link reuses this file: [`TlsClient::new`] turns the `tls-*` settings
//! into one `rustls::ClientConfig` (read once per link), and
//! [`TlsClient::session`] starts a [`Session`] for one connection to one host.
//! Standalone uses it; Sentinel (whose links to sentinels and masters are
//! Standalone links) gets it for free, and a Cluster link builds one client
//! and opens one session per node connection.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, ClientConnection};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
};

use super::net::{wait_for, Cut, Io};
use crate::config::TlsSettings;
use crate::fs::wait::Want;
use crate::stop::Stop;

/// A `tls-*` file that cannot be used: which param, which path, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub param: &'static str,
    pub path: String,
    pub why: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cc_events.conf: param '{}' has invalid value '{}': {}",
            self.param, self.path, self.why
        )
    }
}

/// The `tls-*` settings turned into what rustls needs, once per link.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    settings: Arc<TlsSettings>,
}

impl TlsClient {
    /// Reads `tls-ca-file` (and `tls-cert-file`, `tls-key-file` when set) and
    /// builds the client configuration. A file that is missing, unreadable or
    /// not what it should be is one error naming its param and path.
    pub fn new(settings: &TlsSettings) -> Result<TlsClient, FileError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let ca = certificates("tls-ca-file", &settings.ca_file)?;
        let (added, _unusable) = roots.add_parsable_certificates(ca);
        if added == 0 {
            return Err(FileError {
                param: "tls-ca-file",
                path: settings.ca_file.clone(),
                why: "it holds no usable CA certificate; give a PEM file with the CA that signed Redis's tls-cert-file".into(),
            });
        }
        let roots = Arc::new(roots);
        // The provider is passed in rather than installed process-wide: the
        // module keeps no global state across unload and load.
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| FileError {
                param: "tls",
                path: "true".into(),
                why: format!("the TLS library cannot start: {e}"),
            })?;
        let builder = if settings.verify_hostname {
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly {
                    roots,
                    algorithms: provider.signature_verification_algorithms,
                }))
        };
        let config = match (&settings.cert_file, &settings.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let chain = certificates("tls-cert-file", cert_file)?;
                let key = private_key(key_file)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| FileError {
                        param: "tls-key-file",
                        path: key_file.clone(),
                        why: format!(
                            "it does not go with tls-cert-file '{cert_file}' ({e}); give the key the certificate was made for"
                        ),
                    })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(TlsClient {
            config: Arc::new(config),
            settings: Arc::new(settings.clone()),
        })
    }

    /// The name the server's certificate must carry when connecting to
    /// `host`: `tls-server-name` when set, else the host (a name or an IP
    /// address, which the certificate must then list as an IP address).
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.settings.server_name.as_deref().unwrap_or(host);
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(ServerName::IpAddress(ip.into()));
        }
        ServerName::try_from(name.to_owned()).map_err(|_| {
            let param = if self.settings.server_name.is_some() {
                "tls-server-name"
            } else {
                "host"
            };
            format!(
                "'{name}' is not a valid TLS server name; set {param} to the DNS name or IP address in Redis's certificate"
            )
        })
    }

    /// A TLS session for one connection to `host`, not yet shaken hands.
    /// `target` (e.g. `127.0.0.1:6380 db 0 tls`) and `port` are for messages.
    pub fn session(&self, host: &str, port: u16, target: &str) -> Result<Session, String> {
        let name = self.server_name(host)?;
        let expected = match &name {
            ServerName::DnsName(d) => d.as_ref().to_owned(),
            ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
            other => format!("{other:?}"),
        };
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| format!("cannot start TLS to Redis at {target}: {e}"))?;
        Ok(Session {
            conn,
            why: Why {
                settings: self.settings.clone(),
                target: target.to_owned(),
                port,
                expected,
            },
        })
    }
}

/// Every certificate in a PEM file, or why there is none.
fn certificates(
    param: &'static str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let fail = |why: String| FileError {
        param,
        path: path.to_owned(),
        why,
    };
    let pem = read(path).map_err(&fail)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("it is not a valid PEM file ({e})")))?;
    if certs.is_empty() {
        return Err(fail(
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The client's private key (PKCS#8, PKCS#1 or SEC1 PEM). Never shown.
fn private_key(path: &str) -> Result<PrivateKeyDer<'static>, FileError> {
    let fail = |why: String| FileError {
        param: "tls-key-file",
        path: path.to_owned(),
        why,
    };
    let pem = read(path).map_err(&fail)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        fail(match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "it holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)".into()
            }
            e => format!("it is not a valid PEM private key ({e})"),
        })
    })
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::NotFound => "; check the path",
            io::ErrorKind::PermissionDenied => "; FreeSWITCH's user must be able to read it",
            _ => "",
        };
        format!("cannot read it: {e}{hint}")
    })
}

/// `tls-verify-hostname=false`: the certificate must still chain to
/// `tls-ca-file` and be valid now; only its names are not compared.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A name as the certificate check reports it (`DnsName("localhost")`,
/// `IpAddress(127.0.0.1)`) as an operator would write it in tls-server-name.
fn plain_name(reported: &str) -> &str {
    reported
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            reported
                .strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(reported)
}

/// The context a TLS failure is explained with.
struct Why {
    settings: Arc<TlsSettings>,
    target: String,
    port: u16,
    /// The name the certificate was checked against.
    expected: String,
}

impl Why {
    fn not_tls(&self, what: &str) -> String {
        format!(
            "Redis at {} did not answer the TLS handshake ({what}): is port {} Redis's tls-port? A plaintext port does not speak TLS; set port to Redis's tls-port, or tls=false for a plaintext port",
            self.target, self.port
        )
    }

    /// What a rustls error means to the operator, and what to change.
    fn explain(&self, e: &rustls::Error, handshaking: bool) -> String {
        let s = &self.settings;
        let target = &self.target;
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                    "the certificate of Redis at {target} is not signed by tls-ca-file ({}): set tls-ca-file to the CA that signed Redis's tls-cert-file",
                    s.ca_file
                ),
                CertificateError::NotValidForName => format!(
                    "the certificate of Redis at {target} is not for {}: set tls-server-name to a name in the certificate, or tls-verify-hostname=false (the chain is still checked)",
                    self.expected
                ),
                CertificateError::NotValidForNameContext { presented, .. } => format!(
                    "the certificate of Redis at {target} is for {}, not {}: set tls-server-name to one of those names (or host), or tls-verify-hostname=false (the chain is still checked)",
                    if presented.is_empty() {
                        "no name".to_string()
                    } else {
                        presented.iter().map(|n| plain_name(n)).collect::<Vec<_>>().join(", ")
                    },
                    self.expected
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
                    "the certificate of Redis at {target} has expired: renew Redis's tls-cert-file ({e})"
                ),
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    format!(
                        "the certificate of Redis at {target} is not valid yet: check the clocks of both hosts ({e})"
                    )
                }
                _ => format!(
                    "the certificate of Redis at {target} was refused: {e}; check Redis's tls-cert-file and tls-ca-file"
                ),
            },
            rustls::Error::AlertReceived(alert) => self.alert(*alert),
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. }
                if handshaking =>
            {
                self.not_tls("it answered with something that is not TLS")
            }
            rustls::Error::PeerIncompatible(_) => format!(
                "Redis at {target} and mod_cc_events share no TLS version or cipher ({e}); mod_cc_events speaks TLS 1.2 and 1.3: check tls-protocols and tls-ciphers in redis.conf"
            ),
            e => format!("TLS error with Redis at {target}: {e}"),
        }
    }

    /// What the server's alert says about us.
    fn alert(&self, alert: AlertDescription) -> String {
        let s = &self.settings;
        let target = &self.target;
        match (&s.cert_file, alert) {
            (
                None,
                AlertDescription::CertificateRequired
                | AlertDescription::HandshakeFailure
                | AlertDescription::BadCertificate,
            ) => format!(
                "Redis at {target} requires a client certificate (tls-auth-clients yes; alert: {alert:?}): set tls-cert-file and tls-key-file"
            ),
            (
                Some(cert),
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::DecryptError
                | AlertDescription::CertificateExpired
                | AlertDescription::HandshakeFailure,
            ) => format!(
                "Redis at {target} refused the client certificate tls-cert-file ({cert}) (alert: {alert:?}): it must be signed by Redis's tls-ca-cert-file and be valid now"
            ),
            (_, AlertDescription::ProtocolVersion | AlertDescription::InsufficientSecurity) => format!(
                "Redis at {target} and mod_cc_events share no TLS version or cipher (alert: {alert:?}); mod_cc_events speaks TLS 1.2 and 1.3: check tls-protocols and tls-ciphers in redis.conf"
            ),
            (_, alert) => format!("Redis at {target} ended the TLS session (alert: {alert:?})"),
        }
    }
}

/// One TLS connection, driven over a non-blocking `TcpStream` that the caller
/// owns. Nothing here blocks past `until` or the shutdown deadline.
pub struct Session {
    conn: ClientConnection,
    why: Why,
}

impl Session {
    /// Shakes hands by `until` (`connect-timeout-ms`). Every failure is
    /// explained: an unknown CA, a name mismatch, a plaintext port.
    pub fn handshake(&mut self, sock: &TcpStream, until: Instant, stop: &Stop) -> Result<(), Io> {
        let silent = |e: Io, why: &Why| match e {
            Io::Cut(Cut::TimedOut) => Io::Tls(why.not_tls(
                "no answer within connect-timeout-ms; a plaintext Redis waits for a command",
            )),
            Io::Failed(e) if is_closed(&e) => {
                Io::Tls(why.not_tls(&format!("it closed the connection: {e}")))
            }
            e => e,
        };
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                self.flush(sock, until, stop)
                    .map_err(|e| silent(e, &self.why))?;
                continue;
            }
            match self.conn.read_tls(&mut &*sock) {
                Ok(0) => return Err(Io::Tls(self.why.not_tls("it closed the connection"))),
                Ok(_) => self.process(true)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_for(sock.as_raw_fd(), Want::Read, until, stop)
                        .map_err(|e| silent(e, &self.why))?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(silent(Io::Failed(e), &self.why)),
            }
        }
        // TLS 1.2's last flight, or 1.3's Finished.
        self.flush(sock, until, stop)
    }

    /// Encrypts and sends all of `buf` by `until`.
    pub fn write_all(
        &mut self,
        sock: &TcpStream,
        mut buf: &[u8],
        until: Instant,
        stop: &Stop,
    ) -> Result<(), Io> {
        while !buf.is_empty() {
            // rustls takes what fits in its send buffer; the rest after a flush.
            let n = self.conn.writer().write(buf).map_err(Io::Failed)?;
            if n == 0 && !self.conn.wants_write() {
                return Err(Io::Failed(io::ErrorKind::WriteZero.into()));
            }
            buf = &buf[n..];
            self.flush(sock, until, stop)?;
        }
        Ok(())
    }

    /// Reads decrypted bytes into `buf`, waiting by `until`. `Ok(0)` is the
    /// server's close_notify; a FIN without it is `UnexpectedEof`, as for TCP.
    pub fn read(
        &mut self,
        sock: &TcpStream,
        buf: &mut [u8],
        until: Instant,
        stop: &Stop,
    ) -> Result<usize, Io> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Io::Failed(e)),
            }
            // Alerts or key updates rustls wants to answer go out first.
            self.flush(sock, until, stop)?;
            match self.conn.read_tls(&mut &*sock) {
                // EOF is recorded by rustls: the next read reports it.
                Ok(_) => self.process(false)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_for(sock.as_raw_fd(), Want::Read, until, stop)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Io::Failed(e)),
            }
        }
    }

    /// Sends close_notify if the socket takes it now; never waits (the
    /// connection is being dropped either way).
    pub fn close(&mut self, sock: &TcpStream) {
        self.conn.send_close_notify();
        while self.conn.wants_write() {
            if !matches!(self.conn.write_tls(&mut &*sock), Ok(n) if n > 0) {
                break;
            }
        }
    }

    fn process(&mut self, handshaking: bool) -> Result<(), Io> {
        match self.conn.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => Err(Io::Tls(self.why.explain(&e, handshaking))),
        }
    }

    /// Writes out whatever TLS records are pending.
    fn flush(&mut self, sock: &TcpStream, until: Instant, stop: &Stop) -> Result<(), Io> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut &*sock) {
                Ok(0) => return Err(Io::Failed(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_for(sock.as_raw_fd(), Want::Write, until, stop)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Io::Failed(e)),
            }
        }
        Ok(())
    }
}

/// The peer hung up (FIN or reset): what a plaintext port does on TLS, or a TLS port on plain text.
pub fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ca: &str) -> TlsSettings {
        TlsSettings {
            ca_file: ca.into(),
            ..TlsSettings::default()
        }
    }

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("cc_events-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn err(s: &TlsSettings) -> FileError {
        match TlsClient::new(s) {
            Ok(_) => panic!("{s:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_file_that_cannot_be_used_is_one_error_naming_its_param_and_path() {
        let d = dir("files");
        let e = err(&settings("/nonexistent/ca.pem"));
        assert_eq!(
            (e.param, e.path.as_str()),
            ("tls-ca-file", "/nonexistent/ca.pem")
        );
        assert_eq!(
            e.to_string(),
            "cc_events.conf: param 'tls-ca-file' has invalid value '/nonexistent/ca.pem': cannot read it: No such file or directory (os error 2); check the path"
        );

        let text = d.join("notes.txt");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let e = err(&settings(text.to_str().unwrap()));
        assert_eq!(e.param, "tls-ca-file");
        assert!(e.why.contains("no PEM certificate"), "{e}");

        let broken = d.join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let e = err(&settings(broken.to_str().unwrap()));
        assert!(e.why.contains("not a valid PEM file"), "{e}");

        // A well-formed PEM whose content is no certificate: nothing usable.
        let junk = d.join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = err(&settings(junk.to_str().unwrap()));
        assert!(e.why.contains("no usable CA certificate"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_server_name_is_tls_server_name_or_the_host() {
        let client = TlsClient {
            config: Arc::new(
                ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
            ),
            settings: Arc::new(TlsSettings::default()),
        };
        assert_eq!(
            client.server_name("redis.internal").unwrap(),
            ServerName::try_from("redis.internal").unwrap()
        );
        assert_eq!(
            client.server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into())
        );
        let e = client.server_name("bad name").unwrap_err();
        assert!(e.contains("set host to the DNS name"), "{e}");
        let named = TlsClient {
            settings: Arc::new(TlsSettings {
                server_name: Some("redis.example".into()),
                ..TlsSettings::default()
            }),
            ..client
        };
        assert_eq!(
            named.server_name("10.0.0.5").unwrap(),
            ServerName::try_from("redis.example").unwrap()
        );
    }

    fn why(cert_file: Option<&str>) -> Why {
        Why {
            settings: Arc::new(TlsSettings {
                ca_file: "/etc/redis/ca.crt".into(),
                cert_file: cert_file.map(Into::into),
                key_file: cert_file.map(|_| "/etc/redis/client.key".into()),
                ..TlsSettings::default()
            }),
            target: "localhost:6380 db 0 tls".into(),
            port: 6380,
            expected: "wrong.example".into(),
        }
    }

    #[test]
    fn each_tls_failure_says_what_to_change() {
        let w = why(None);
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            w.explain(&unknown, true),
            "the certificate of Redis at localhost:6380 db 0 tls is not signed by tls-ca-file (/etc/redis/ca.crt): set tls-ca-file to the CA that signed Redis's tls-cert-file"
        );
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("wrong.example").unwrap(),
            presented: vec![
                "DnsName(\"localhost\")".into(),
                "IpAddress(127.0.0.1)".into(),
            ],
        });
        let m = w.explain(&name, true);
        assert!(
            m.starts_with("the certificate of Redis at localhost:6380 db 0 tls is for localhost, 127.0.0.1, not wrong.example: set tls-server-name"),
            "{m}"
        );
        let not_tls = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(w
            .explain(&not_tls, true)
            .contains("did not answer the TLS handshake (it answered with something that is not TLS): is port 6380 Redis's tls-port?"));
        let required = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
        assert!(w
            .explain(&required, false)
            .contains("requires a client certificate (tls-auth-clients yes; alert: CertificateRequired): set tls-cert-file and tls-key-file"));
        let refused = rustls::Error::AlertReceived(AlertDescription::UnknownCA);
        assert!(why(Some("/etc/redis/client.crt"))
            .explain(&refused, false)
            .contains("refused the client certificate tls-cert-file (/etc/redis/client.crt)"));
    }
}
