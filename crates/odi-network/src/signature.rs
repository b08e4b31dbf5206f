//! Minisign signatures: verification (prehashed only) with `minisign-verify`, and key
//! generation and signing with `minisign`, in the exact file formats of the `minisign` tool.

use base64::Engine as _;

/// What was wrong with a key or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The `.minisig` text is not a minisign signature.
    #[error("malformed signature file")]
    MalformedSignature,
    /// The public key text is not a minisign public key.
    #[error("malformed public key `{0}`")]
    MalformedKey(String),
    /// Signed in minisign's legacy mode, which signs the data rather than its BLAKE2b hash.
    #[error("legacy (non-prehashed) signature; re-sign with a current minisign or `odi sign`")]
    Legacy,
    /// Made with a key that is not among the allowed ones.
    #[error("signed by key {0}, which is not allowed to sign this file")]
    UnexpectedKey(String),
    /// The key matches but the bytes or trusted comment were changed.
    #[error("signature does not match the file (modified after signing?)")]
    Invalid,
    /// Key generation or signing failed.
    #[error("{0}")]
    Signing(String),
}

/// A minisign public key with its id, as minisign prints it.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: minisign_verify::PublicKey,
    base64: String,
    id: String,
}

impl PublicKey {
    /// Parses the base64 form (the second line of a `.pub` file), or a whole `.pub` file.
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let line = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .unwrap_or("");
        let bad = || SignatureError::MalformedKey(line.chars().take(60).collect());
        let key = minisign_verify::PublicKey::from_base64(line).map_err(|_| bad())?;
        let raw = base64::engine::general_purpose::STANDARD.decode(line).map_err(|_| bad())?;
        let id = key_id_hex(raw.get(2..10).ok_or_else(bad)?);
        Ok(Self { key, base64: line.to_owned(), id })
    }

    /// The base64 form.
    pub fn base64(&self) -> &str {
        &self.base64
    }

    /// The key id in minisign's spelling (16 uppercase hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Verifies `signature` (the text of a `.minisig` file) over `data`. Legacy signatures
    /// are refused: they sign the raw data, which the format's authors deprecated.
    pub fn verify(&self, data: &[u8], signature: &str) -> Result<(), SignatureError> {
        let sig = minisign_verify::Signature::decode(signature)
            .map_err(|_| SignatureError::MalformedSignature)?;
        match self.key.verify(data, &sig, false) {
            Ok(()) => Ok(()),
            Err(minisign_verify::Error::UnexpectedKeyId) => Err(SignatureError::UnexpectedKey(
                signature_key_id(signature).unwrap_or_else(|| "?".into()),
            )),
            Err(minisign_verify::Error::UnexpectedAlgorithm) => Err(SignatureError::Legacy),
            Err(minisign_verify::Error::InvalidEncoding) => Err(SignatureError::MalformedSignature),
            Err(_) => Err(SignatureError::Invalid),
        }
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for PublicKey {}

fn key_id_hex(le: &[u8]) -> String {
    // minisign prints the 8-byte key number as a little-endian u64 in uppercase hex.
    le.iter().rev().map(|b| format!("{b:02X}")).collect()
}

/// The key id a signature claims, for error messages.
pub fn signature_key_id(signature: &str) -> Option<String> {
    let line = signature.lines().nth(1)?.trim();
    let raw = base64::engine::general_purpose::STANDARD.decode(line).ok()?;
    Some(key_id_hex(raw.get(2..10)?))
}

/// A fresh key pair in minisign's file formats.
#[derive(Debug)]
pub struct GeneratedKey {
    /// Contents of the `.key` file (unencrypted, as `minisign -G -W` writes).
    pub secret_file: String,
    /// Contents of the `.pub` file.
    pub public_file: String,
    /// The base64 public key, to paste into a root or delegation.
    pub public: String,
}

/// Generates an unencrypted key pair; `odi keygen` relies on file permissions, like
/// `minisign -W`, because agents and CI sign without a person to type a password.
pub fn generate_key() -> Result<GeneratedKey, SignatureError> {
    let err = |e: minisign::PError| SignatureError::Signing(e.to_string());
    let kp = minisign::KeyPair::generate_unencrypted_keypair().map_err(err)?;
    let public_file = kp.pk.to_box().map_err(err)?.into_string();
    let secret_file = kp.sk.to_box(None).map_err(err)?.into_string();
    Ok(GeneratedKey { secret_file, public: kp.pk.to_base64(), public_file })
}

/// A secret key loaded from a minisign `.key` file.
pub struct SecretKey(minisign::SecretKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Parses a `.key` file; an encrypted key needs its password.
    pub fn parse(text: &str, password: Option<String>) -> Result<Self, SignatureError> {
        let err =
            |e: minisign::PError| SignatureError::Signing(format!("cannot read secret key: {e}"));
        let sk_box = minisign::SecretKeyBox::from_string(text).map_err(err)?;
        // Bytes 2..4 of the key blob name the KDF; zero means the key is stored unencrypted.
        let blob = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .unwrap_or("");
        let raw = base64::engine::general_purpose::STANDARD.decode(blob).unwrap_or_default();
        let encrypted = raw.get(2..4).is_some_and(|kdf| kdf != [0, 0]);
        let sk = if encrypted {
            let Some(pw) = password else {
                return Err(SignatureError::Signing(
                    "the secret key is encrypted: set ODI_KEY_PASSWORD".into(),
                ));
            };
            sk_box.into_secret_key(Some(pw)).map_err(err)?
        } else {
            sk_box.into_unencrypted_secret_key().map_err(err)?
        };
        Ok(Self(sk))
    }

    /// The public half, to find which role or delegation key this is.
    pub fn public(&self) -> Result<PublicKey, SignatureError> {
        let pk = minisign::PublicKey::from_secret_key(&self.0)
            .map_err(|e| SignatureError::Signing(format!("cannot derive the public key: {e}")))?;
        PublicKey::parse(&pk.to_base64())
    }

    /// Signs `data` (prehashed, like `minisign -S`), returning the `.minisig` text.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<String, SignatureError> {
        let sig =
            minisign::sign(None, &self.0, data, Some(trusted_comment), Some("signature from odi"))
                .map_err(|e| SignatureError::Signing(e.to_string()))?;
        Ok(sig.into_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_tamper() {
        let k = generate_key().unwrap();
        let pk = PublicKey::parse(&k.public_file).unwrap();
        assert_eq!(PublicKey::parse(&k.public).unwrap(), pk);
        let sk = SecretKey::parse(&k.secret_file, None).unwrap();
        let sig = sk.sign(b"hello", "file:x serial:1").unwrap();
        pk.verify(b"hello", &sig).unwrap();
        assert_eq!(pk.verify(b"hellO", &sig), Err(SignatureError::Invalid));
        let other = PublicKey::parse(&generate_key().unwrap().public).unwrap();
        assert!(
            matches!(other.verify(b"hello", &sig), Err(SignatureError::UnexpectedKey(id)) if id == pk.id())
        );
        assert_eq!(pk.verify(b"hello", "garbage"), Err(SignatureError::MalformedSignature));
        // Changing the trusted comment breaks the global signature.
        let tampered = sig.replace("serial:1", "serial:9");
        assert_eq!(pk.verify(b"hello", &tampered), Err(SignatureError::Invalid));
    }

    #[test]
    fn malformed_keys() {
        assert!(matches!(PublicKey::parse("not a key"), Err(SignatureError::MalformedKey(_))));
        assert!(PublicKey::parse("").is_err());
    }
}
