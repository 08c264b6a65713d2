//! Who may read the agent's HTTP port: TLS from a certificate chain and key in PEM files, and a
//! bearer token for `/metrics` from a file. The files are read at start (a bad one stops the
//! agent before anything is attached) and read again when they change, as a Kubernetes Secret
//! mounted as a volume is updated in place: their metadata is looked at, at most every
//! [`RELOAD_EVERY`], when a connection comes. A changed file that cannot be used is reported
//! and the previous one is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use subtle::ConstantTimeEq;

/// How often the files' metadata is looked at for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// Bytes of a token file: a token is a line, not a document.
const MAX_TOKEN: u64 = 4 << 10;

/// The certificate chain and key `--metrics-tls-cert` and `--metrics-tls-key` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The files that lock the port; none: plain HTTP, open to all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessFiles {
    pub tls: Option<TlsFiles>,
    /// `--metrics-token-file`.
    pub token: Option<PathBuf>,
}

/// The bearer token `/metrics` asks for.
pub struct Token(Vec<u8>);

impl Token {
    /// Whether an `Authorization` header's value carries the token. The bytes are compared in
    /// constant time: the time taken says nothing of how much of a guess was right.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        // The scheme is case-insensitive (RFC 9110, 11.1).
        match value.split_at_checked(7) {
            Some((scheme, given)) if scheme.eq_ignore_ascii_case(b"bearer ") => {
                bool::from(given.ct_eq(&self.0))
            }
            _ => false,
        }
    }
}

/// What the server serves with now, kept in step with the files.
pub struct Access {
    files: AccessFiles,
    tls: Option<Arc<ServerConfig>>,
    token: Option<Arc<Token>>,
    /// Each file's metadata when last read, in [`AccessFiles::paths`]' order.
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
}

/// What tells a file was replaced or rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    inode: u64,
    len: u64,
}

impl AccessFiles {
    fn paths(&self) -> Vec<&Path> {
        let tls = self
            .tls
            .iter()
            .flat_map(|t| [t.cert.as_path(), t.key.as_path()]);
        tls.chain(self.token.as_deref()).collect()
    }
}

impl Access {
    /// Reads the files; an error names the flag and file and says what to give.
    pub fn load(files: AccessFiles) -> anyhow::Result<Access> {
        let stamps = stamps(&files);
        let tls = files.tls.as_ref().map(load_tls).transpose()?;
        let token = files.token.as_deref().map(load_token).transpose()?;
        Ok(Access {
            files,
            tls: tls.map(Arc::new),
            token: token.map(Arc::new),
            stamps,
            checked: Instant::now(),
        })
    }

    /// The TLS settings to accept a connection with; `None`: plain HTTP.
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls.clone()
    }

    /// The token `/metrics` asks for; `None`: it asks for none.
    pub fn token(&self) -> Option<Arc<Token>> {
        self.token.clone()
    }

    /// Reads the files again if `now` is [`RELOAD_EVERY`] past the last look and one of them
    /// changed. What cannot be used is said on stderr, and the previous settings kept.
    pub fn refresh(&mut self, now: Instant) {
        if now.saturating_duration_since(self.checked) < RELOAD_EVERY {
            return;
        }
        self.checked = now;
        let stamps = stamps(&self.files);
        if stamps == self.stamps {
            return;
        }
        // Taken even when the new files fail, so a broken file is reported once, not at every
        // look; fixing it changes the stamps again.
        self.stamps = stamps;
        let reloaded = (|| {
            let tls = self.files.tls.as_ref().map(load_tls).transpose()?;
            let token = self.files.token.as_deref().map(load_token).transpose()?;
            anyhow::Ok((tls, token))
        })();
        match reloaded {
            Ok((tls, token)) => {
                self.tls = tls.map(Arc::new);
                self.token = token.map(Arc::new);
                say!("dnslens: agent: the metrics port's TLS or token files changed: reloaded");
            }
            Err(e) => say!(
                "dnslens: agent: warning: the metrics port's files changed but cannot be used, \
                 the previous ones are kept: {e:#}"
            ),
        }
    }
}

fn stamps(files: &AccessFiles) -> Vec<Option<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    files
        .paths()
        .into_iter()
        .map(|p| {
            // Followed: a Secret's files are symlinks into a directory that is swapped whole.
            let m = std::fs::metadata(p).ok()?;
            Some(Stamp {
                modified: m.modified().ok(),
                inode: m.ino(),
                len: m.len(),
            })
        })
        .collect()
}

fn load_tls(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let cert = files.cert.display();
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("--metrics-tls-cert {cert}: cannot read a PEM certificate"))?;
    if chain.is_empty() {
        bail!("--metrics-tls-cert {cert}: no CERTIFICATE in it: give the PEM certificate chain");
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
        format!(
            "--metrics-tls-key {}: cannot read a PEM private key (PKCS#8, PKCS#1 or SEC1)",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "--metrics-tls-cert {cert} and --metrics-tls-key {}: the key does not fit the \
                 certificate, or is of a kind rustls refuses",
                files.key.display()
            )
        })?;
    // hyper serves HTTP/1.1 only: say so, so a client offering h2 does not try it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn load_token(path: &Path) -> anyhow::Result<Token> {
    use std::io::Read;
    let name = path.display();
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN + 1).read_to_end(&mut text))
        .with_context(|| format!("--metrics-token-file {name}: cannot read it"))?;
    if text.len() as u64 > MAX_TOKEN {
        bail!("--metrics-token-file {name}: over {MAX_TOKEN} bytes: give a file with the token");
    }
    let token = text.trim_ascii();
    // RFC 6750's b64token: what can follow `Bearer ` in a header.
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b);
    if token.is_empty() || !token.iter().all(allowed) {
        bail!(
            "--metrics-token-file {name}: give one token of letters, digits and -._~+/= (a \
             line; the newline after it is ignored)"
        );
    }
    Ok(Token(token.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_whole_bearer_credential() {
        let token = Token(b"s3cret".to_vec());
        assert!(token.allows(Some(b"Bearer s3cret")));
        assert!(token.allows(Some(b"bearer s3cret")));
        for refused in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cretx",
            b"Bearer  s3cret",
            b"Basic s3cret",
            b"s3cret",
            b"",
        ] {
            assert!(!token.allows(Some(refused)), "{refused:?}");
        }
        assert!(!token.allows(None));
    }

    #[test]
    fn token_files_are_one_token() {
        let dir = std::env::temp_dir().join(format!("dlh-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "abc-DEF_1.2~3+/=\n").unwrap();
        assert_eq!(load_token(&file).unwrap().0, b"abc-DEF_1.2~3+/=");
        for bad in ["", "\n", "two words\n", "a\nb\n"] {
            std::fs::write(&file, bad).unwrap();
            let e = format!("{:#}", load_token(&file).err().unwrap());
            assert!(e.contains("give one token"), "{bad:?}: {e}");
        }
        std::fs::write(&file, "a".repeat(5000)).unwrap();
        let e = format!("{:#}", load_token(&file).err().unwrap());
        assert!(e.contains("over 4096 bytes"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        let e = format!("{:#}", load_token(&file).err().unwrap());
        assert!(
            e.starts_with("--metrics-token-file ") && e.contains("cannot read"),
            "{e}"
        );
    }
}
