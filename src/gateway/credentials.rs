//! Per-user upstream credentials (`[servers.NAME.credentials]`): each
//! upstream session is started with its caller's own credential, so the
//! upstream sees the real user and no shared key sits in the config.
//!
//! - **Where.** A directory with one file per principal ([`file_name`]
//!   encodes the name: principals hold `:`, `/`, `#`, so raw text is never
//!   joined to a path), or one TOML file of `"principal" = "secret"`
//!   entries. Both are read when a session starts, off the async workers,
//!   so a rotated credential is used from the next session on.
//! - **Private.** A file group or others may read or write, or that
//!   another user owns, is refused (as ssh refuses a private key), and so
//!   is a directory group or others may write; checked at start and at
//!   every read.
//! - **Deny by default.** A caller with no credential gets no session
//!   (`no_credential`); the gateway's own sessions (its trusted listing)
//!   use the entry of [`GATEWAY_PRINCIPAL`].
//! - **Never shown.** A [`Credential`] prints as its source and
//!   fingerprint (`sha256:` and 16 hex digits of its SHA-256), which
//!   `session.opened` records; no error names a secret or quotes a
//!   credentials file (a TOML error is reported by line only).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use reqwest::header::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use crate::config::{CredentialsConfig, ServerConfig, TransportKind};

/// The principal whose credential the gateway's own upstream sessions use
/// (the trusted tool listing behind approval and drift checks).
pub const GATEWAY_PRINCIPAL: &str = "sealgate:gateway";

/// A credentials file larger than this is refused.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// A credential longer than this is refused.
const MAX_SECRET_BYTES: usize = 16 << 10;
/// Longest file name most file systems take.
const MAX_FILE_NAME: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("servers.{server}.credentials: {detail}")]
    Config { server: String, detail: String },
    #[error("server {server} has no credential for principal {principal:?} ({place})")]
    Missing {
        server: String,
        principal: String,
        place: String,
    },
    #[error("server {server}: credentials {path}: {detail}")]
    Unusable {
        server: String,
        path: PathBuf,
        detail: String,
    },
    #[error("server {server} cannot use the credential of principal {principal:?}: {path}: {detail}")]
    Unreadable {
        server: String,
        principal: String,
        path: PathBuf,
        detail: String,
    },
    #[error("server {server}: the credential of principal {principal:?} {detail}")]
    Invalid {
        server: String,
        principal: String,
        detail: String,
    },
}

/// The file of `principal` in a credentials directory: its name with
/// every byte but ASCII letters, digits, `-`, `_`, `.` and `@` written as
/// `%XX` (uppercase hex), and a leading `.` as `%2E` (so no name is `.`,
/// `..` or hidden). `%` itself is encoded, so two principals never share
/// a file: `https://idp.example.com#alice` is
/// `https%3A%2F%2Fidp.example.com%23alice`.
pub fn file_name(principal: &str) -> String {
    let mut out = String::with_capacity(principal.len());
    for (i, b) in principal.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'@') || (b == b'.' && i > 0);
        if plain {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A server's credential source, checked at start.
#[derive(Debug)]
pub struct Credentials {
    server: String,
    source: Source,
    inject: Inject,
}

#[derive(Debug)]
enum Source {
    Dir(PathBuf),
    File(PathBuf),
}

/// How the upstream is given the credential.
#[derive(Clone, Debug)]
enum Inject {
    Header { name: HeaderName, scheme: String },
    Env(String),
}

/// One principal's credential, read for one upstream session. Its `Debug`
/// shows where it came from and its fingerprint, never the secret.
pub struct Credential {
    secret: String,
    source: events::CredentialSource,
    fingerprint: String,
    inject: Inject,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({:?}, {})", self.source, self.fingerprint)
    }
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of `secret`.
pub fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..16])
}

impl Credential {
    pub fn source(&self) -> events::CredentialSource {
        self.source
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// For an HTTP upstream: the header and its value (marked sensitive,
    /// so the HTTP stack never prints it).
    pub fn header(&self) -> Option<(HeaderName, HeaderValue)> {
        let Inject::Header { name, scheme } = &self.inject else {
            return None;
        };
        let text = if scheme.is_empty() {
            self.secret.clone()
        } else {
            format!("{scheme} {}", self.secret)
        };
        // Checked when read: no control characters, so always a value.
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some((name.clone(), value))
    }

    /// For a stdio upstream: the variable and its value.
    pub fn env(&self) -> Option<(&str, &str)> {
        match &self.inject {
            Inject::Env(name) => Some((name.as_str(), self.secret.as_str())),
            Inject::Header { .. } => None,
        }
    }
}

impl Credentials {
    /// The source of a server whose config passed [`CredentialsConfig::check`]: a
    /// directory must be one and not writable by group or others; a file
    /// must be private and load whole.
    pub fn load(server: &str, config: &ServerConfig, c: &CredentialsConfig) -> Result<Credentials, CredentialError> {
        c.check(server, config).map_err(|detail| CredentialError::Config {
            server: server.to_string(),
            detail,
        })?;
        let refused = |detail: &str| CredentialError::Config {
            server: server.to_string(),
            detail: detail.to_string(),
        };
        let inject = match config.transport {
            TransportKind::Stdio => Inject::Env(c.env.clone().ok_or_else(|| refused("a stdio upstream needs env"))?),
            TransportKind::Http => Inject::Header {
                name: HeaderName::try_from(c.header.as_deref().unwrap_or("Authorization"))
                    .map_err(|_| refused("header is not a header name"))?,
                scheme: c.scheme.clone().unwrap_or_else(|| "Bearer".into()),
            },
        };
        let source = match (&c.dir, &c.file) {
            (Some(dir), _) => Source::Dir(dir.clone()),
            (None, Some(file)) => Source::File(file.clone()),
            (None, None) => return Err(refused("needs exactly one of dir and file")),
        };
        let credentials = Credentials {
            server: server.to_string(),
            source,
            inject,
        };
        match &credentials.source {
            Source::Dir(dir) => credentials.check_dir(dir)?,
            Source::File(file) => {
                let entries = credentials.read_file(file)?;
                for (principal, secret) in &entries {
                    credentials.check_secret(principal, secret)?;
                }
            }
        }
        Ok(credentials)
    }

    /// `principal`'s credential, read now (blocking: call it off the async
    /// workers). Every error names the server and the principal.
    pub fn lookup(&self, principal: &str) -> Result<Credential, CredentialError> {
        self.read(principal).map_err(|e| match e {
            CredentialError::Unusable { server, path, detail } => CredentialError::Unreadable {
                server,
                principal: principal.to_string(),
                path,
                detail,
            },
            other => other,
        })
    }

    fn read(&self, principal: &str) -> Result<Credential, CredentialError> {
        let (source, secret) = match &self.source {
            Source::Dir(dir) => {
                self.check_dir(dir)?;
                let name = file_name(principal);
                if name.is_empty() || name.len() > MAX_FILE_NAME {
                    return Err(self.missing(principal, "its name encodes to no valid file name"));
                }
                let path = dir.join(&name);
                let secret = match read_private(&path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(self.missing(principal, &format!("no file {name} in {}", dir.display())));
                    }
                    Err(e) => return Err(self.unusable(&path, e.to_string())),
                };
                let text = String::from_utf8(secret).map_err(|_| self.invalid(principal, "is not UTF-8"))?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                (events::CredentialSource::Dir, text.to_string())
            }
            Source::File(file) => {
                let mut entries = self.read_file(file)?;
                let Some(secret) = entries.remove(principal) else {
                    return Err(self.missing(principal, &format!("no entry in {}", file.display())));
                };
                (events::CredentialSource::File, secret)
            }
        };
        self.check_secret(principal, &secret)?;
        Ok(Credential {
            fingerprint: fingerprint(&secret),
            secret,
            source,
            inject: self.inject.clone(),
        })
    }

    fn missing(&self, principal: &str, place: &str) -> CredentialError {
        CredentialError::Missing {
            server: self.server.clone(),
            principal: principal.to_string(),
            place: place.to_string(),
        }
    }

    fn unusable(&self, path: &Path, detail: String) -> CredentialError {
        CredentialError::Unusable {
            server: self.server.clone(),
            path: path.to_path_buf(),
            detail,
        }
    }

    fn invalid(&self, principal: &str, detail: &str) -> CredentialError {
        CredentialError::Invalid {
            server: self.server.clone(),
            principal: principal.to_string(),
            detail: detail.to_string(),
        }
    }

    fn check_secret(&self, principal: &str, secret: &str) -> Result<(), CredentialError> {
        if secret.is_empty() {
            return Err(self.invalid(principal, "is empty"));
        }
        if secret.len() > MAX_SECRET_BYTES {
            return Err(self.invalid(principal, "is longer than 16 KiB"));
        }
        if secret.chars().any(char::is_control) {
            return Err(self.invalid(
                principal,
                "holds a control character (a line break inside it?), which no header or variable can carry",
            ));
        }
        Ok(())
    }

    fn check_dir(&self, dir: &Path) -> Result<(), CredentialError> {
        let meta = std::fs::metadata(dir).map_err(|e| self.unusable(dir, e.to_string()))?;
        if !meta.is_dir() {
            return Err(self.unusable(dir, "is not a directory".into()));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(self.unusable(
                dir,
                format!(
                    "group or others may write it (mode {:o}), and so put a credential of their choosing in it; chmod go-w it",
                    meta.mode() & 0o7777
                ),
            ));
        }
        check_owner(&meta).map_err(|detail| self.unusable(dir, detail))
    }

    /// The entries of a credentials file (principal → secret).
    fn read_file(&self, path: &Path) -> Result<BTreeMap<String, String>, CredentialError> {
        let bytes = read_private(path).map_err(|e| self.unusable(path, e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| self.unusable(path, "is not UTF-8".into()))?;
        // A TOML error quotes the line it is on, which may hold a secret:
        // only the line number is told.
        let table = text.parse::<toml::Table>().map_err(|e| {
            let line = e
                .span()
                .map(|s| {
                    text.as_bytes()[..s.start.min(text.len())]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count()
                        + 1
                })
                .map_or_else(String::new, |l| format!(" at line {l}"));
            self.unusable(
                path,
                format!("is not TOML{line} (its text is not shown: it holds secrets)"),
            )
        })?;
        let mut entries = BTreeMap::new();
        for (principal, value) in table {
            let toml::Value::String(secret) = value else {
                return Err(self.unusable(
                    path,
                    format!(
                        "the entry {principal:?} is not a string (write entries as \"principal\" = \"secret\", quoting names with dots)"
                    ),
                ));
            };
            entries.insert(principal, secret);
        }
        Ok(entries)
    }
}

/// Reads a file that must be a regular file, private to its owner (no
/// group or other permission) and owned by the gateway's user or root;
/// the checks are of the file opened (after symlinks), not of its path.
fn read_private(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let refuse = |detail: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, detail);
    if !meta.is_file() {
        return Err(refuse("is not a regular file".into()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "group or others have access to it (mode {:o}); a credentials file must be private: chmod 600 it",
            meta.mode() & 0o7777
        )));
    }
    check_owner(&meta).map_err(refuse)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(refuse(format!("is larger than {MAX_FILE_BYTES} bytes")));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(refuse(format!("is larger than {MAX_FILE_BYTES} bytes")));
    }
    Ok(bytes)
}

fn check_owner(meta: &std::fs::Metadata) -> Result<(), String> {
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "is owned by uid {}, neither the gateway's user (uid {me}) nor root",
            meta.uid()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn server(transport: &str, extra: &str, credentials: &str) -> ServerConfig {
        let text = match transport {
            "stdio" => format!("transport = \"stdio\"\ncommand = \"x\"\n{extra}\n[credentials]\n{credentials}\n"),
            _ => format!(
                "transport = \"http\"\nurl = \"http://127.0.0.1:1/mcp\"\n{extra}\n[credentials]\n{credentials}\n"
            ),
        };
        toml::from_str(&text).expect("server config")
    }

    fn private(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    #[test]
    fn principal_names_encode_to_one_safe_file_name_each() {
        for (name, file) in [
            ("alice", "alice"),
            ("alice.smith@example.com", "alice.smith@example.com"),
            ("https://idp.example.com#alice", "https%3A%2F%2Fidp.example.com%23alice"),
            ("..", "%2E."),
            (".", "%2E"),
            (".hidden", "%2Ehidden"),
            ("a/../../etc/passwd", "a%2F..%2F..%2Fetc%2Fpasswd"),
            ("50%", "50%25"),
            ("é", "%C3%A9"),
            ("a b\n", "a%20b%0A"),
        ] {
            assert_eq!(file_name(name), file, "{name:?}");
            assert!(!file.contains('/') && file != "." && file != "..");
        }
        // `%` is always encoded, so a name that looks encoded is not its decoding.
        assert_ne!(file_name("a%2Fb"), file_name("a/b"));
    }

    #[test]
    fn bad_credentials_tables_are_refused_by_key() {
        for (transport, extra, table, want) in [
            ("http", "", "", "exactly one of dir and file"),
            ("http", "", "dir = \"d\"\nfile = \"f\"", "exactly one of dir and file"),
            ("http", "", "dir = \"d\"\nenv = \"TOKEN\"", "env is for stdio"),
            ("stdio", "", "dir = \"d\"", "needs env"),
            (
                "stdio",
                "",
                "dir = \"d\"\nenv = \"TOKEN\"\nheader = \"X\"",
                "header and scheme are for http",
            ),
            ("stdio", "", "dir = \"d\"\nenv = \"PATH\"", "replace the inherited PATH"),
            ("stdio", "", "dir = \"d\"\nenv = \"A=B\"", "not a variable name"),
            (
                "stdio",
                "environment = { TOKEN = \"static-s3cret\" }",
                "dir = \"d\"\nenv = \"TOKEN\"",
                "also set in servers.s.environment",
            ),
            (
                "http",
                "headers = { authorization = \"Bearer shared-s3cret\" }",
                "dir = \"d\"",
                "also set in servers.s.headers.authorization",
            ),
            (
                "http",
                "headers = { \"X-Api-Key\" = \"shared-s3cret\" }",
                "dir = \"d\"\nheader = \"x-api-key\"\nscheme = \"\"",
                "also set in servers.s.headers.X-Api-Key",
            ),
            (
                "http",
                "",
                "dir = \"d\"\nheader = \"Mcp-Session-Id\"",
                "set by the transport",
            ),
            ("http", "", "dir = \"d\"\nheader = \"bad header\"", "not a header name"),
            ("http", "", "dir = \"d\"\nscheme = \"Bearer x\"", "not one word"),
        ] {
            let config = server(transport, extra, table);
            let credentials = config.credentials.clone().expect("credentials");
            let msg = credentials.check("s", &config).expect_err(want);
            assert!(
                msg.contains(want) && msg.starts_with("servers.s.credentials: "),
                "{want}: {msg}"
            );
            assert!(!msg.contains("s3cret"), "{msg}");
        }
        let config = server(
            "http",
            "headers = { \"X-Trace\" = \"1\" }",
            "dir = \"d\"\nscheme = \"\"",
        );
        config
            .credentials
            .as_ref()
            .expect("c")
            .check("s", &config)
            .expect("a plain header");
    }

    /// A file source: read whole at start and at every lookup; entries by
    /// principal; what is wrong is named without the secrets.
    #[test]
    fn a_credentials_file_is_private_and_never_quoted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("creds.toml");
        private(
            &file,
            "alice = \"alice-s3cret\"\n\"https://idp.example.com#bob\" = \"bob-s3cret\"\n",
        );
        let config = server("http", "", &format!("file = {:?}", file.to_string_lossy()));
        let c = config.credentials.clone().expect("c");
        let creds = Credentials::load("s", &config, &c).expect("load");
        let alice = creds.lookup("alice").expect("alice");
        assert_eq!(alice.fingerprint(), fingerprint("alice-s3cret"));
        assert_eq!(alice.fingerprint().len(), "sha256:".len() + 16);
        let (name, value) = alice.header().expect("header");
        assert_eq!(name.as_str(), "authorization");
        assert_eq!(value.to_str().expect("ascii"), "Bearer alice-s3cret");
        assert!(value.is_sensitive());
        assert!(!format!("{alice:?} {value:?}").contains("s3cret"));
        assert!(creds.lookup("https://idp.example.com#bob").is_ok());
        let msg = creds.lookup("carol").expect_err("carol has none").to_string();
        assert!(
            msg.contains("server s has no credential for principal \"carol\""),
            "{msg}"
        );

        // Rotated: the next lookup reads the new file.
        private(&file, "alice = \"alice-rotated\"\n");
        let alice = creds.lookup("alice").expect("rotated");
        assert_eq!(alice.fingerprint(), fingerprint("alice-rotated"));

        for (text, mode, want) in [
            ("alice = \"alice-s3cret\"\n", 0o640, "group or others have access"),
            ("alice = \"alice-s3cret\"\n", 0o604, "group or others have access"),
            (
                "alice = \"alice-s3cret\"\nbob = \"bob-s3cret",
                0o600,
                "is not TOML at line 2",
            ),
            ("alice = 42\n", 0o600, "the entry \"alice\" is not a string"),
            (
                "alice.x = \"alice-s3cret\"\n",
                0o600,
                "the entry \"alice\" is not a string",
            ),
            ("alice = \"alice\\ns3cret\"\n", 0o600, "holds a control character"),
            ("alice = \"\"\n", 0o600, "is empty"),
            (
                "alice = \"alice-s3cret\"\nalice = \"again-s3cret\"\n",
                0o600,
                "is not TOML at line 2",
            ),
        ] {
            std::fs::write(&file, text).expect("write");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let msg = Credentials::load("s", &config, &c).expect_err(want).to_string();
            assert!(msg.contains(want), "{want}: {msg}");
            assert!(!msg.contains("s3cret"), "{msg}");
            let msg = creds.lookup("alice").expect_err(want).to_string();
            assert!(msg.contains(want), "{want}: {msg}");
        }
    }

    /// A directory source: one private file per encoded principal name;
    /// a directory others may write to is refused.
    #[test]
    fn a_credentials_directory_holds_one_private_file_per_principal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds_dir = dir.path().join("creds");
        std::fs::create_dir(&creds_dir).expect("mkdir");
        std::fs::set_permissions(&creds_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        private(&creds_dir.join("alice"), "alice-s3cret\n");
        private(
            &creds_dir.join(file_name("https://idp.example.com#bob")),
            "bob-s3cret\r\n",
        );
        // Beside the directory: what a `..` principal would reach unencoded.
        private(&dir.path().join("passwd"), "not-a-credential\n");
        let config = server(
            "stdio",
            "",
            &format!("dir = {:?}\nenv = \"GITHUB_TOKEN\"", creds_dir.to_string_lossy()),
        );
        let c = config.credentials.clone().expect("c");
        let creds = Credentials::load("s", &config, &c).expect("load");
        let alice = creds.lookup("alice").expect("alice");
        assert_eq!(alice.env(), Some(("GITHUB_TOKEN", "alice-s3cret")));
        assert_eq!(alice.source(), events::CredentialSource::Dir);
        let bob = creds.lookup("https://idp.example.com#bob").expect("bob");
        assert_eq!(bob.env(), Some(("GITHUB_TOKEN", "bob-s3cret")));
        for principal in ["../passwd", "..", "carol", ""] {
            let msg = creds.lookup(principal).expect_err(principal).to_string();
            assert!(msg.contains("has no credential for principal"), "{principal:?}: {msg}");
        }
        std::fs::set_permissions(creds_dir.join("alice"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let msg = creds.lookup("alice").expect_err("too open").to_string();
        assert!(
            msg.starts_with("server s cannot use the credential of principal \"alice\": ") && msg.contains("chmod 600"),
            "{msg}"
        );
        assert!(!msg.contains("s3cret"), "{msg}");
        std::fs::set_permissions(&creds_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let msg = Credentials::load("s", &config, &c)
            .expect_err("writable dir")
            .to_string();
        assert!(msg.contains("group or others may write it"), "{msg}");
        assert!(creds.lookup("https://idp.example.com#bob").is_err());
    }
}
