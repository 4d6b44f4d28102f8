//! The pre-shared link key and the MAC that proves a `Hello` was made with it.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::frame::Role;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the link key is empty")]
    EmptyKey,
    #[error("the hello MAC does not match the link key")]
    BadMac,
}

/// The pre-shared key of the media link, from the config of both sides.
#[derive(Clone)]
pub struct LinkKey(Vec<u8>);

impl LinkKey {
    /// An empty key would make every MAC forgeable, so it is refused.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, HandshakeError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(HandshakeError::EmptyKey);
        }
        Ok(Self(bytes))
    }
}

impl FromStr for LinkKey {
    type Err = HandshakeError;

    /// The key is the UTF-8 bytes of the string, as written in the config.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s.as_bytes())
    }
}

// Keys end up in config structs that get logged; never print the secret.
impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKey(<redacted>)")
    }
}

fn role_byte(role: Role) -> u8 {
    match role {
        Role::Mixer => 0,
        Role::Recorder => 1,
    }
}

fn hello_hmac(
    key: &LinkKey,
    nonce: &[u8; 32],
    version: u16,
    role: Role,
    recording: &str,
) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(&key.0).expect("HMAC takes keys of any length");
    mac.update(nonce);
    mac.update(&version.to_le_bytes());
    mac.update(&[role_byte(role)]);
    mac.update(recording.as_bytes());
    mac
}

/// HMAC-SHA256 over `nonce || version (LE) || role byte || recording`.
pub fn hello_mac(
    key: &LinkKey,
    nonce: &[u8; 32],
    version: u16,
    role: Role,
    recording: &str,
) -> [u8; 32] {
    hello_hmac(key, nonce, version, role, recording)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a received MAC in constant time.
pub fn verify_hello_mac(
    key: &LinkKey,
    nonce: &[u8; 32],
    version: u16,
    role: Role,
    recording: &str,
    mac: &[u8],
) -> Result<(), HandshakeError> {
    hello_hmac(key, nonce, version, role, recording)
        .verify_slice(mac)
        .map_err(|_| HandshakeError::BadMac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn mac_matches_known_answer() {
        // Computed independently: HMAC-SHA256("secret key", 00..1f || 01 00 || 00 || "rec-42").
        let key: LinkKey = "secret key".parse().unwrap();
        let mac = hello_mac(&key, &nonce(), 1, Role::Mixer, "rec-42");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "3c8851ef27734c6446d1802a20d9dac94c2d47be8a49b583d632dc92c0894b59"
        );
    }

    #[test]
    fn verify_accepts_own_mac_and_rejects_any_change() {
        let key = LinkKey::new(b"k".to_vec()).unwrap();
        let mac = hello_mac(&key, &nonce(), 1, Role::Mixer, "r");
        assert_eq!(
            verify_hello_mac(&key, &nonce(), 1, Role::Mixer, "r", &mac),
            Ok(())
        );
        let other_key = LinkKey::new("K").unwrap();
        let mut other_nonce = nonce();
        other_nonce[31] ^= 1;
        for result in [
            verify_hello_mac(&other_key, &nonce(), 1, Role::Mixer, "r", &mac),
            verify_hello_mac(&key, &other_nonce, 1, Role::Mixer, "r", &mac),
            verify_hello_mac(&key, &nonce(), 2, Role::Mixer, "r", &mac),
            verify_hello_mac(&key, &nonce(), 1, Role::Recorder, "r", &mac),
            verify_hello_mac(&key, &nonce(), 1, Role::Mixer, "s", &mac),
            verify_hello_mac(&key, &nonce(), 1, Role::Mixer, "r", &mac[..31]),
        ] {
            assert_eq!(result, Err(HandshakeError::BadMac));
        }
    }

    #[test]
    fn empty_key_is_refused() {
        assert_eq!(
            LinkKey::new(Vec::new()).unwrap_err(),
            HandshakeError::EmptyKey
        );
        assert_eq!("".parse::<LinkKey>().unwrap_err(), HandshakeError::EmptyKey);
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let key = LinkKey::new("hunter2").unwrap();
        assert!(!format!("{key:?}").contains("hunter2"));
    }
}
