//! What one analytics event stores, and how a request becomes one: the visitor fingerprint
//! (the original's formula), the stored address (a keyed hash unless raw addresses are asked
//! for), and the bounds on the text a client sends.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::server::client::UNKNOWN_CLIENT;

/// Longest user agent stored, in bytes: real ones are a few hundred.
pub const MAX_USER_AGENT_BYTES: usize = 512;
/// Longest path stored, in bytes; the other free-text fields share the same bound.
pub const MAX_PATH_BYTES: usize = 2048;

/// A row of `page_views`, as the original's columns hold it (`id` is the store's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageView {
    pub user_fingerprint: String,
    pub path: String,
    pub route_name: Option<String>,
    pub podcast: Option<String>,
    pub episode: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub referrer: Option<String>,
    pub user_agent: String,
    pub ip_address: String,
    /// RFC 3339, as the original writes it; the `days` filter compares it as text.
    pub created_at: String,
}

/// A row of `episode_plays`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpisodePlay {
    pub user_fingerprint: String,
    pub podcast: String,
    pub episode: String,
    pub user_agent: String,
    pub ip_address: String,
    pub created_at: String,
}

/// One event on its way to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PageView(PageView),
    EpisodePlay(EpisodePlay),
}

/// The current time as the original stores it (`chrono::Utc::now().to_rfc3339()`).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// The oldest `created_at` within the last `days` days, for text comparison.
pub fn days_ago(days: u32) -> String {
    (chrono::Utc::now() - chrono::Duration::days(i64::from(days))).to_rfc3339()
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// How a client's address is written to `ip_address`.
#[derive(Clone)]
pub enum AddressPolicy {
    /// HMAC-SHA256 of the address under this key, hex: counts stay right, and without the
    /// key the stored values cannot be matched back to addresses by trying them all.
    Keyed(Vec<u8>),
    /// The address itself (`ANALYTICS_STORE_RAW_IP=true`), as the original stored it.
    Raw,
}

impl std::fmt::Debug for AddressPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressPolicy::Keyed(_) => f.write_str("Keyed(…)"),
            AddressPolicy::Raw => f.write_str("Raw"),
        }
    }
}

impl AddressPolicy {
    /// The `ip_address` value for `client`.
    pub fn stored(&self, client: IpAddr) -> String {
        let address = shown_address(client);
        match self {
            AddressPolicy::Raw => address,
            AddressPolicy::Keyed(key) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(address.as_bytes());
                hex(&mac.finalize().into_bytes())
            }
        }
    }
}

/// The address as the original wrote it: `unknown` when the client cannot be told.
fn shown_address(client: IpAddr) -> String {
    if client == UNKNOWN_CLIENT {
        "unknown".to_owned()
    } else {
        client.to_string()
    }
}

/// The original's visitor fingerprint: hex of the first 16 bytes of SHA-256 of
/// `"ip:userAgent"`, over the real address, so fingerprints written by the original and by
/// podmap count the same visitor once.
pub fn fingerprint(client: IpAddr, user_agent: &str) -> String {
    let digest = Sha256::digest(format!("{}:{user_agent}", shown_address(client)).as_bytes());
    hex(&digest[..16])
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The address key kept in `path`: read when the file is there, else 32 random bytes written
/// once (hex, mode 0600), so stored values stay comparable across restarts.
pub fn load_or_create_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let secret = hex(&random);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok(secret.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_follow_the_original_formula() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let expected = hex(&Sha256::digest(b"203.0.113.7:Mozilla/5.0")[..16]);
        assert_eq!(fingerprint(ip, "Mozilla/5.0"), expected);
        assert_eq!(expected.len(), 32);
        let unknown = hex(&Sha256::digest(b"unknown:ua")[..16]);
        assert_eq!(fingerprint(UNKNOWN_CLIENT, "ua"), unknown);
    }

    #[test]
    fn addresses_are_keyed_unless_raw_is_asked_for() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(AddressPolicy::Raw.stored(ip), "2001:db8::1");
        let a = AddressPolicy::Keyed(b"one".to_vec()).stored(ip);
        let b = AddressPolicy::Keyed(b"two".to_vec()).stored(ip);
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(!a.contains("2001"));
        assert_eq!(a, AddressPolicy::Keyed(b"one".to_vec()).stored(ip));
    }

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        assert_eq!(bounded("abc".into(), 5), "abc");
        assert_eq!(bounded("abcdef".into(), 3), "abc");
        // "é" is two bytes: a cut inside it keeps the character out.
        assert_eq!(bounded("aé".into(), 2), "a");
        assert_eq!(bounded("é".repeat(600), MAX_USER_AGENT_BYTES).len(), 512);
    }

    #[test]
    fn the_secret_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("analytics.secret");
        let first = load_or_create_secret(&path).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create_secret(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn days_ago_sorts_before_now() {
        assert!(days_ago(1) < now());
        assert!(days_ago(30) < days_ago(1));
    }
}
