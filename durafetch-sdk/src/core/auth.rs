//! Bearer-token checks for the export API and the authenticator on internal calls.
//!
//! Tokens are compared as SHA-256 digests with `subtle`, so the time taken depends neither on
//! where a guess first differs nor on its length.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The wrangler secret that holds the token(s) that may read (export and index).
pub const SECRET_NAME: &str = "DURAFETCH_AUTH";
/// The wrangler secret that holds the token(s) that may write (restore). Separate, so that a
/// leaked reading token cannot write; without it, the worker refuses every restore.
pub const RESTORE_SECRET_NAME: &str = "DURAFETCH_RESTORE_AUTH";
/// The shortest token accepted as a secret.
pub const MIN_TOKEN_LEN: usize = 40;
/// Header carrying the internal authenticator on worker → object and object → registry calls.
pub const INTERNAL_HEADER: &str = "x-durafetch-internal";

const INTERNAL_CONTEXT: &[u8] = b"durafetch internal call v1\0";

/// Why the configured secret cannot be used. The message names the fix and never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("durafetch: the secret {0} is not set; set it with `wrangler secret put {0}` (locally: a {0} line in .dev.vars) to a random token of at least 40 characters")]
    Missing(&'static str),
    #[error("durafetch: a token in the secret {0} is shorter than 40 characters; set it with `wrangler secret put {0}` to a random token of at least 40 characters")]
    TooShort(&'static str),
    #[error("durafetch: a token in the secret {RESTORE_SECRET_NAME} is also in {SECRET_NAME}, so every reader could write; restore stays off until `wrangler secret put {RESTORE_SECRET_NAME}` sets tokens of its own")]
    SharedToken,
}

/// The accepted tokens. The secret may hold several, separated by white space or commas, so that
/// a new token can be rolled out before the old one is removed.
pub struct Secret {
    digests: Vec<[u8; 32]>,
    internal: [u8; 32],
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

impl Secret {
    /// The reading secret, [`SECRET_NAME`].
    pub fn parse(raw: Option<&str>) -> Result<Self, SecretError> {
        Self::parse_named(SECRET_NAME, raw)
    }

    /// The secret `name` (whose errors name it) from its value `raw`.
    pub fn parse_named(name: &'static str, raw: Option<&str>) -> Result<Self, SecretError> {
        let raw = raw.map(str::trim).filter(|s| !s.is_empty()).ok_or(SecretError::Missing(name))?;
        let tokens: Vec<&str> = raw.split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()).collect();
        if tokens.iter().any(|t| t.len() < MIN_TOKEN_LEN) {
            return Err(SecretError::TooShort(name));
        }
        Ok(Self {
            digests: tokens.iter().map(|t| digest(&[t.as_bytes()])).collect(),
            internal: digest(&[INTERNAL_CONTEXT, raw.as_bytes()]),
        })
    }

    /// Whether `token` is one of the accepted tokens. Every accepted token is compared, so the
    /// time does not tell which one matched.
    pub fn accepts(&self, token: &str) -> bool {
        let candidate = digest(&[token.as_bytes()]);
        let mut any = Choice::from(0);
        for accepted in &self.digests {
            any |= accepted.ct_eq(&candidate);
        }
        any.into()
    }

    /// The restore secret `self`, refused if it accepts a token `reading` accepts: a token that
    /// can read must never write.
    pub fn apart_from(self, reading: &Secret) -> Result<Self, SecretError> {
        let mut shared = Choice::from(0);
        for mine in &self.digests {
            for theirs in &reading.digests {
                shared |= mine.ct_eq(theirs);
            }
        }
        if bool::from(shared) {
            Err(SecretError::SharedToken)
        } else {
            Ok(self)
        }
    }

    /// Whether the `Authorization` header value carries an accepted bearer token.
    pub fn accepts_header(&self, authorization: Option<&str>) -> bool {
        // Compare even when the header is absent or malformed, so that its shape is not timed.
        let token = authorization.and_then(bearer_token);
        let ok = self.accepts(token.unwrap_or(""));
        ok && token.is_some()
    }

    /// The value internal calls carry in [`INTERNAL_HEADER`]: derived from the secret, so only code
    /// running with the secret can produce it, and distinct from every token.
    pub fn internal_tag(&self) -> String {
        hex(&self.internal)
    }

    pub fn accepts_internal(&self, tag: Option<&str>) -> bool {
        let candidate = digest(&[tag.unwrap_or("").as_bytes()]);
        let expected = digest(&[self.internal_tag().as_bytes()]);
        bool::from(candidate.ct_eq(&expected)) && tag.is_some()
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEF";

    #[test]
    fn a_restore_secret_sharing_a_token_with_the_reading_secret_is_refused() {
        let other = "Z123456789abcdefghijklmnopqrstuvwxyzABCDEF";
        let reading = Secret::parse(Some(&format!("{TOKEN} {other}"))).unwrap();
        let shared = Secret::parse_named(RESTORE_SECRET_NAME, Some(&format!("{other}x, {TOKEN}"))).unwrap();
        let message = shared.apart_from(&reading).unwrap_err().to_string();
        assert!(message.contains(RESTORE_SECRET_NAME) && message.contains(SECRET_NAME), "{message}");
        assert!(!message.contains(TOKEN), "the message never shows a token");
        let own = Secret::parse_named(RESTORE_SECRET_NAME, Some(&format!("{other}x"))).unwrap();
        assert!(own.apart_from(&reading).is_ok());
    }
    const OTHER: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlk";

    #[test]
    fn missing_empty_and_short_secrets_are_refused_with_the_fix() {
        assert_eq!(Secret::parse(None).unwrap_err(), SecretError::Missing(SECRET_NAME));
        assert_eq!(Secret::parse(Some("  ")).unwrap_err(), SecretError::Missing(SECRET_NAME));
        assert_eq!(Secret::parse(Some(&TOKEN[..39])).unwrap_err(), SecretError::TooShort(SECRET_NAME));
        assert_eq!(Secret::parse(Some(&format!("{TOKEN} short"))).unwrap_err(), SecretError::TooShort(SECRET_NAME));
        let msg = SecretError::TooShort(SECRET_NAME).to_string();
        assert!(msg.contains("wrangler secret put DURAFETCH_AUTH"));
        let restore = Secret::parse_named(RESTORE_SECRET_NAME, None).unwrap_err().to_string();
        assert!(restore.contains("wrangler secret put DURAFETCH_RESTORE_AUTH"), "{restore}");
        assert!(Secret::parse(Some(&TOKEN[..40])).is_ok());
    }

    #[test]
    fn only_exact_tokens_are_accepted() {
        let secret = Secret::parse(Some(TOKEN)).unwrap();
        assert!(secret.accepts(TOKEN));
        for bad in ["", &TOKEN[..TOKEN.len() - 1], &format!("{TOKEN}x"), OTHER, &TOKEN.to_uppercase()] {
            assert!(!secret.accepts(bad), "{bad:?}");
        }
    }

    #[test]
    fn several_tokens_allow_rotation() {
        let secret = Secret::parse(Some(&format!("{TOKEN},\n{OTHER}"))).unwrap();
        assert!(secret.accepts(TOKEN));
        assert!(secret.accepts(OTHER));
        assert!(!secret.accepts("nope"));
    }

    #[test]
    fn bearer_header_parsing() {
        let secret = Secret::parse(Some(TOKEN)).unwrap();
        assert!(secret.accepts_header(Some(&format!("Bearer {TOKEN}"))));
        assert!(secret.accepts_header(Some(&format!("bearer  {TOKEN} "))));
        assert!(!secret.accepts_header(Some(TOKEN)));
        assert!(!secret.accepts_header(Some(&format!("Basic {TOKEN}"))));
        assert!(!secret.accepts_header(Some("Bearer ")));
        assert!(!secret.accepts_header(None));
    }

    #[test]
    fn internal_tag_is_not_a_token_and_depends_on_the_secret() {
        let secret = Secret::parse(Some(TOKEN)).unwrap();
        let tag = secret.internal_tag();
        assert!(secret.accepts_internal(Some(&tag)));
        assert!(!secret.accepts(&tag));
        assert!(!secret.accepts_internal(Some(TOKEN)));
        assert!(!secret.accepts_internal(None));
        let other = Secret::parse(Some(OTHER)).unwrap();
        assert!(!other.accepts_internal(Some(&tag)));
        assert!(!format!("{secret:?}").contains(TOKEN));
    }

    /// Welch's t-statistic of two samples, after dropping the slowest 5% of each (preemption).
    fn welch_t(a: &mut [f64], b: &mut [f64]) -> f64 {
        let crop = |x: &mut [f64]| -> Vec<f64> {
            x.sort_by(f64::total_cmp);
            x[..x.len() * 95 / 100].to_vec()
        };
        let (a, b) = (crop(a), crop(b));
        let stats = |x: &[f64]| {
            let n = x.len() as f64;
            let mean = x.iter().sum::<f64>() / n;
            (mean, x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0), n)
        };
        let ((ma, va, na), (mb, vb, nb)) = (stats(&a), stats(&b));
        (ma - mb) / (va / na + vb / nb).sqrt()
    }

    /// On demand (the machine is noisy): `cargo test -p durafetch-sdk --no-default-features
    /// --release token_checks -- --ignored --nocapture`. A guess that shares all but its last
    /// character with the token and one that differs at the first character must take the same
    /// time, and so must one guess checked against a token of its own length and against a longer
    /// token it is a prefix of: |t| < 4.5 (the guess's own length is the caller's, not a secret).
    #[test]
    #[ignore]
    fn token_checks_take_the_same_time_whatever_the_guess() {
        let same_length = Secret::parse(Some(TOKEN)).unwrap();
        let longer = Secret::parse(Some(&format!("{TOKEN}0123456789abcdefghijkl"))).unwrap();
        let near = format!("{}!", &TOKEN[..TOKEN.len() - 1]);
        let far = format!("!{}", &TOKEN[1..]);
        let cases: [(&Secret, &str); 3] = [(&same_length, &near), (&same_length, &far), (&longer, TOKEN)];
        const SAMPLES: usize = 300_000;
        const CALLS: usize = 8;
        let mut times: [Vec<f64>; 3] = Default::default();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..SAMPLES * cases.len() {
            let case = rng.usize(..cases.len());
            let (secret, guess) = std::hint::black_box(cases[case]);
            let started = std::time::Instant::now();
            for _ in 0..CALLS {
                std::hint::black_box(secret.accepts(guess));
            }
            times[case].push(started.elapsed().as_nanos() as f64);
        }
        let [mut near_t, mut far_t, mut longer_t] = times;
        let prefix = welch_t(&mut near_t.clone(), &mut far_t);
        // The same guess length against both secrets: `TOKEN` has the length of `near`.
        let length = welch_t(&mut near_t, &mut longer_t);
        println!("t-statistics: shared prefix vs first character {prefix:.2}; token of the guess's length vs longer token {length:.2} (limit 4.5)");
        for t in [prefix, length] {
            assert!(t.abs() < 4.5, "timing depends on the token: t = {t:.2}");
        }
    }
}
