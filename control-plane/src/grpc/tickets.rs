//! TLS 1.3 session tickets that every replica can open, so an agent that reconnects to
//! any replica resumes its TLS session instead of doing the full handshake (certificate
//! signatures and their verification are most of a handshake's cost).
//!
//! rustls's own ticketer draws random keys per process; this one derives the ticket key
//! of each period (six hours) from a master secret shared by the replicas (sealed in the
//! store, see [`crate::secrets`]) with HKDF-SHA256, so keys rotate every period with no
//! coordination, and a ticket opens in its own period and the next one. Tickets are
//! AES-256-GCM sealed, the period authenticated as associated data.
//!
//! rustls does not verify the client certificate again on resumption: the session start
//! checks revocation and expiry of the certificate the ticket carries (see
//! `AgentControlService::authenticate`).

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf;

/// How long one ticket key is used for new tickets.
pub const PERIOD_SECS: u64 = 6 * 3600;

/// Tickets sealed under keys derived from a shared master secret.
pub struct SharedTicketer {
    master: hkdf::Prk,
}

impl std::fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedTicketer(..)")
    }
}

/// An HKDF output length.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl SharedTicketer {
    /// A ticketer over the fleet's master secret (at least 32 random bytes).
    pub fn new(master_secret: &[u8]) -> Self {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"tether tls ticket keys v1");
        Self {
            master: salt.extract(master_secret),
        }
    }

    fn period_now() -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        now / PERIOD_SECS
    }

    fn key(&self, period: u64) -> Option<RandomizedNonceKey> {
        let info = period.to_be_bytes();
        let info: [&[u8]; 1] = [&info];
        let okm = self.master.expand(&info, Len(32)).ok()?;
        let mut bytes = [0u8; 32];
        okm.fill(&mut bytes).ok()?;
        RandomizedNonceKey::new(&AES_256_GCM, &bytes).ok()
    }

    fn seal(&self, period: u64, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.key(period)?;
        let aad = period.to_be_bytes();
        let mut in_out = plain.to_vec();
        let nonce = key
            .seal_in_place_append_tag(Aad::from(aad), &mut in_out)
            .ok()?;
        let mut out = Vec::with_capacity(8 + NONCE_LEN + in_out.len());
        out.extend_from_slice(&aad);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        Some(out)
    }

    fn open(&self, now_period: u64, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < 8 + NONCE_LEN {
            return None;
        }
        let (aad, rest) = cipher.split_at(8);
        let period = u64::from_be_bytes(aad.try_into().ok()?);
        // This period's tickets, and the last period's until they expire.
        if period != now_period && period.checked_add(1) != Some(now_period) {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let key = self.key(period)?;
        let mut in_out = sealed.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(aad), &mut in_out).ok()?;
        Some(plain.to_vec())
    }
}

impl rustls::server::ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        PERIOD_SECS as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(Self::period_now(), plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(Self::period_now(), cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_replica_opens_a_ticket_of_this_or_the_last_period_only() {
        let a = SharedTicketer::new(&[7u8; 32]);
        let b = SharedTicketer::new(&[7u8; 32]);
        let other = SharedTicketer::new(&[8u8; 32]);
        let t = a.seal(100, b"session state").expect("seal");
        assert_eq!(b.open(100, &t).as_deref(), Some(&b"session state"[..]));
        assert_eq!(b.open(101, &t).as_deref(), Some(&b"session state"[..]));
        assert_eq!(b.open(102, &t), None, "two periods old");
        assert_eq!(b.open(99, &t), None, "from the future");
        assert_eq!(other.open(100, &t), None, "another fleet's secret");
        let mut forged = t.clone();
        forged[..8].copy_from_slice(&101u64.to_be_bytes());
        assert_eq!(b.open(101, &forged), None, "the period is authenticated");
        assert_eq!(b.open(100, &t[..10]), None);
    }
}
