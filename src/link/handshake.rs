//! The pre-shared link key and the Noise handshake that proves both ends hold it.
//! Sans-IO: the shell reads the lengths these functions name and hands the bytes in.
//!
//! Wire (see docs/design/media-link.md):
//! 1. recorder -> mixer: [`BANNER`], which a version 1 mixer reads as a `Reject`
//!    naming the version it lacks;
//! 2. mixer -> recorder: preamble `"RBXL" || version u16 LE || key id [8]`, then Noise
//!    message 1 as `u16 LE length || bytes`;
//! 3. recorder -> mixer: Noise message 2, `u16 LE length || bytes`.
//!
//! The banner and the preamble are the Noise prologue, so neither can be altered
//! without the handshake failing.

use std::fmt;
use std::io;
use std::str::FromStr;

use hkdf::Hkdf;
use sha2::Sha256;
use snow::{HandshakeState, StatelessTransportState};

/// Noise pattern of the link: no static keys, the pre-shared key mixed in first.
const NOISE_PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// Version of the media-link protocol spoken by this build.
const PROTOCOL_VERSION: u16 = 2;

const MAGIC: &[u8; 4] = b"RBXL";
/// Bytes of the mixer's preamble.
pub const PREAMBLE_LEN: usize = MAGIC.len() + 2 + KEY_ID_LEN;
const KEY_ID_LEN: usize = 8;
/// Largest handshake message accepted (NN messages are 48 bytes without payload).
pub const MAX_HANDSHAKE_MSG: usize = 256;
/// Largest banner a mixer reads before giving up on the peer.
const MAX_BANNER: usize = 256;

const BANNER_TEXT: &[u8] = b"recbox media link protocol version 2 is required: upgrade this peer";

/// What the recorder sends first: the framing of protocol version 1 (`u32 LE length
/// || postcard`) around its `Reject` frame (variant 3, a varint-prefixed string).
pub const BANNER: &[u8] = &{
    const BODY: usize = 2 + BANNER_TEXT.len();
    let mut out = [0u8; 4 + BODY];
    out[0] = BODY as u8;
    out[4] = 3;
    out[5] = BANNER_TEXT.len() as u8;
    let mut i = 0;
    while i < BANNER_TEXT.len() {
        out[6 + i] = BANNER_TEXT[i];
        i += 1;
    }
    out
};

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the link key is empty")]
    EmptyKey,
    #[error("the peer speaks media-link protocol version {got}, this side version {want}: upgrade the older one")]
    Version { got: u16, want: u16 },
    #[error("the peer does not speak the recbox media link (unexpected greeting)")]
    NotRecbox,
    #[error("the mixer uses key {got}, which this recorder does not hold (it holds {known})")]
    UnknownKey { got: KeyId, known: String },
    #[error("recorder failed authentication: its handshake does not decrypt with the link key")]
    RecorderWrongKey(#[source] snow::Error),
    #[error("recorder failed authentication: it closed the connection before proving the link key (does it hold key {key}?)")]
    RecorderClosed {
        key: KeyId,
        #[source]
        source: io::Error,
    },
    #[error("mixer failed authentication: its handshake does not decrypt with key {0}")]
    MixerFailedAuth(KeyId),
    #[error("handshake message of {len} bytes exceeds {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
}

/// The pre-shared key of the media link, from the config of both sides.
#[derive(Clone)]
pub struct LinkKey {
    psk: [u8; 32],
    id: KeyId,
}

/// Names a key on the wire without revealing it: 8 bytes of HKDF-SHA256 output.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl LinkKey {
    /// Any non-empty secret; Noise's 32-byte PSK and the key id are derived from it
    /// with HKDF-SHA256, under different labels.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, HandshakeError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(HandshakeError::EmptyKey);
        }
        let hk = Hkdf::<Sha256>::new(Some(b"recbox media link"), &bytes);
        let mut psk = [0; 32];
        let mut id = [0; KEY_ID_LEN];
        hk.expand(b"noise psk v2", &mut psk).expect("32 bytes");
        hk.expand(b"key id v2", &mut id).expect("8 bytes");
        Ok(Self { psk, id: KeyId(id) })
    }

    pub fn id(&self) -> KeyId {
        self.id
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
        write!(f, "LinkKey({})", self.id)
    }
}

/// The keys a recorder accepts: the current one and, during a rotation, the previous.
#[derive(Debug, Clone)]
pub struct KeyRing {
    pub current: LinkKey,
    pub previous: Option<LinkKey>,
}

impl From<LinkKey> for KeyRing {
    fn from(current: LinkKey) -> Self {
        Self::single(current)
    }
}

impl KeyRing {
    pub fn single(current: LinkKey) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    fn find(&self, id: KeyId) -> Option<&LinkKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    fn describe(&self) -> String {
        match &self.previous {
            Some(p) => format!("{} and previous {}", self.current.id, p.id),
            None => self.current.id.to_string(),
        }
    }
}

fn handshake(
    key: &LinkKey,
    prologue: &[u8],
    initiator: bool,
) -> Result<HandshakeState, HandshakeError> {
    let params = NOISE_PATTERN.parse().expect("a valid pattern");
    let builder = snow::Builder::new(params)
        .psk(0, &key.psk)?
        .prologue(prologue)?;
    Ok(if initiator {
        builder.build_initiator()?
    } else {
        builder.build_responder()?
    })
}

/// Length of the banner body from its 4-byte prefix, as the mixer reads it.
pub fn banner_len(prefix: [u8; 4]) -> Result<usize, HandshakeError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_BANNER {
        return Err(HandshakeError::NotRecbox);
    }
    Ok(len)
}

/// Checks the banner body; a version 1 recorder greets with its `Challenge`
/// (variant 0, then the version as a varint).
pub fn check_banner(body: &[u8]) -> Result<(), HandshakeError> {
    if body == &BANNER[4..] {
        return Ok(());
    }
    match body {
        [0, v, ..] if *v < 0x80 => Err(HandshakeError::Version {
            got: u16::from(*v),
            want: PROTOCOL_VERSION,
        }),
        _ => Err(HandshakeError::NotRecbox),
    }
}

/// Length of a handshake message from its 2-byte prefix, bounded.
pub fn message_len(prefix: [u8; 2]) -> Result<usize, HandshakeError> {
    let len = u16::from_le_bytes(prefix) as usize;
    if len > MAX_HANDSHAKE_MSG {
        return Err(HandshakeError::TooLarge {
            len,
            max: MAX_HANDSHAKE_MSG,
        });
    }
    Ok(len)
}

fn framed_message(state: &mut HandshakeState, out: &mut Vec<u8>) -> Result<(), HandshakeError> {
    let mut msg = [0u8; MAX_HANDSHAKE_MSG];
    let n = state.write_message(&[], &mut msg)?;
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&msg[..n]);
    Ok(())
}

/// The mixer's side, after it checked the banner.
pub struct Initiator {
    state: HandshakeState,
}

impl Initiator {
    /// Returns the bytes to send: the preamble and Noise message 1.
    pub fn start(key: &LinkKey) -> Result<(Self, Vec<u8>), HandshakeError> {
        let mut out = preamble(key.id, PROTOCOL_VERSION).to_vec();
        let mut state = handshake(key, &prologue(&out), true)?;
        framed_message(&mut state, &mut out)?;
        Ok((Self { state }, out))
    }

    /// Reads Noise message 2 (without its length prefix). It decrypts only if the
    /// recorder holds the key: this is where the recorder proves it.
    pub fn finish(mut self, msg2: &[u8]) -> Result<StatelessTransportState, HandshakeError> {
        let mut payload = [0u8; MAX_HANDSHAKE_MSG];
        self.state
            .read_message(msg2, &mut payload)
            .map_err(HandshakeError::RecorderWrongKey)?;
        Ok(self.state.into_stateless_transport_mode()?)
    }
}

fn preamble(id: KeyId, version: u16) -> [u8; PREAMBLE_LEN] {
    let mut out = [0; PREAMBLE_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4..6].copy_from_slice(&version.to_le_bytes());
    out[6..].copy_from_slice(&id.0);
    out
}

fn prologue(preamble: &[u8]) -> Vec<u8> {
    [BANNER, preamble].concat()
}

/// The recorder's side, once the preamble is in.
pub struct Responder {
    state: HandshakeState,
    key: KeyId,
}

impl Responder {
    /// Checks the preamble and picks the key it names.
    pub fn new(keys: &KeyRing, preamble: &[u8; PREAMBLE_LEN]) -> Result<Self, HandshakeError> {
        if &preamble[..4] != MAGIC {
            return Err(HandshakeError::NotRecbox);
        }
        let version = u16::from_le_bytes([preamble[4], preamble[5]]);
        if version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version {
                got: version,
                want: PROTOCOL_VERSION,
            });
        }
        let id = KeyId(preamble[6..].try_into().expect("8 bytes"));
        let key = keys.find(id).ok_or_else(|| HandshakeError::UnknownKey {
            got: id,
            known: keys.describe(),
        })?;
        let state = handshake(key, &prologue(preamble), false)?;
        Ok(Self { state, key: id })
    }

    /// Reads Noise message 1 and returns message 2 (length-prefixed) and the transport.
    /// The mixer is proven only by its first transport record: message 1 could be a
    /// replay, but no replay decrypts under this handshake's fresh ephemeral key.
    pub fn respond(
        mut self,
        msg1: &[u8],
    ) -> Result<(Vec<u8>, StatelessTransportState, KeyId), HandshakeError> {
        let mut payload = [0u8; MAX_HANDSHAKE_MSG];
        self.state
            .read_message(msg1, &mut payload)
            .map_err(|_| HandshakeError::MixerFailedAuth(self.key))?;
        let mut out = Vec::new();
        framed_message(&mut self.state, &mut out)?;
        Ok((out, self.state.into_stateless_transport_mode()?, self.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> LinkKey {
        s.parse().unwrap()
    }

    fn run(mixer: &LinkKey, keys: &KeyRing) -> Result<KeyId, HandshakeError> {
        check_banner(&BANNER[4..banner_len(BANNER[..4].try_into().unwrap())? + 4])?;
        let (init, out) = Initiator::start(mixer)?;
        let resp = Responder::new(keys, out[..PREAMBLE_LEN].try_into().unwrap())?;
        let len = message_len(out[PREAMBLE_LEN..PREAMBLE_LEN + 2].try_into().unwrap())?;
        let (msg2, _, id) = resp.respond(&out[PREAMBLE_LEN + 2..PREAMBLE_LEN + 2 + len])?;
        init.finish(&msg2[2..])?;
        Ok(id)
    }

    #[test]
    fn both_keys_of_a_rotation_are_accepted() {
        let ring = KeyRing {
            current: key("new"),
            previous: Some(key("old")),
        };
        assert_eq!(run(&key("new"), &ring).unwrap(), key("new").id());
        assert_eq!(run(&key("old"), &ring).unwrap(), key("old").id());
        assert!(matches!(
            run(&key("other"), &ring),
            Err(HandshakeError::UnknownKey { .. })
        ));
    }

    #[test]
    fn a_recorder_without_the_key_fails_authentication() {
        let (init, out) = Initiator::start(&key("k")).unwrap();
        // Claims the mixer's key id, but answers with another key.
        let mut pre: [u8; PREAMBLE_LEN] = out[..PREAMBLE_LEN].try_into().unwrap();
        let fake = key("guess");
        pre[6..].copy_from_slice(&fake.id().0);
        let resp = Responder::new(&KeyRing::single(fake), &pre).unwrap();
        let fake_msg = resp.respond(&out[PREAMBLE_LEN + 2..]);
        // The forged preamble already breaks the prologue: the mixer's message fails.
        assert!(matches!(fake_msg, Err(HandshakeError::MixerFailedAuth(_))));
        assert!(matches!(
            init.finish(&[0; 48]),
            Err(HandshakeError::RecorderWrongKey(_))
        ));
    }

    #[test]
    fn old_peers_and_strangers_are_named() {
        // A version 1 recorder's Challenge: variant 0, version 1, 32 nonce bytes.
        let mut challenge = vec![0, 1];
        challenge.extend([9; 32]);
        assert!(matches!(
            check_banner(&challenge),
            Err(HandshakeError::Version { got: 1, want: 2 })
        ));
        assert!(matches!(
            check_banner(b"HTTP/1.1"),
            Err(HandshakeError::NotRecbox)
        ));
        assert!(banner_len(*b"HTTP").is_err());
        let mut pre = preamble(key("k").id(), 1);
        assert!(matches!(
            Responder::new(&KeyRing::single(key("k")), &pre),
            Err(HandshakeError::Version { got: 1, want: 2 })
        ));
        pre[0] = b'X';
        assert!(matches!(
            Responder::new(&KeyRing::single(key("k")), &pre),
            Err(HandshakeError::NotRecbox)
        ));
        assert!(message_len([0xff, 0xff]).is_err());
    }

    #[test]
    fn the_banner_is_a_version_1_reject() {
        let len = u32::from_le_bytes(BANNER[..4].try_into().unwrap()) as usize;
        assert_eq!(len, BANNER.len() - 4);
        assert_eq!(BANNER[4], 3);
        assert_eq!(&BANNER[6..], BANNER_TEXT);
    }

    #[test]
    fn empty_key_is_refused_and_never_printed() {
        assert!(matches!(
            LinkKey::new(Vec::new()),
            Err(HandshakeError::EmptyKey)
        ));
        let k = key("hunter2");
        assert!(!format!("{k:?}").contains("hunter2"));
        assert_ne!(key("a").id(), key("b").id());
    }
}
