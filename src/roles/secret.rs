//! SCRAM-SHA-256 secrets as PostgreSQL stores them (RFC 5802, RFC 7677): the salt, the
//! iteration count, `StoredKey` and `ServerKey`. Neither key is enough to log in: a client
//! proves it knows `ClientKey`, of which only the hash `StoredKey` is kept, and the server
//! proves it holds `ServerKey`. (pgwire's SCRAM needs `SaltedPassword`, from which both keys
//! and a valid proof follow, so the exchange is TasteDB's own: `server::scram`.)

use pgwire::api::auth::sasl::scram::gen_salted_password;
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};

/// PBKDF2 iterations of new secrets (PostgreSQL's default `scram_iterations`).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// A role's SCRAM-SHA-256 verifier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramSecret {
    /// Random salt of the PBKDF2 derivation.
    pub salt: Vec<u8>,
    /// PBKDF2 rounds.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl ScramSecret {
    /// The verifier of `password` (SASLprep-normalised) under a new random salt.
    pub fn new(password: &str) -> ScramSecret {
        let salt: [u8; 16] = rand::random();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS as usize);
        ScramSecret::from_salted_password(&salted, salt.to_vec(), SCRAM_ITERATIONS)
    }

    /// The verifier of a `SaltedPassword` (how secrets were stored before).
    pub fn from_salted_password(salted: &[u8], salt: Vec<u8>, iterations: u32) -> ScramSecret {
        let client_key = hmac_sha256(salted, b"Client Key");
        ScramSecret {
            salt,
            iterations,
            stored_key: digest::digest(&digest::SHA256, &client_key)
                .as_ref()
                .to_vec(),
            server_key: hmac_sha256(salted, b"Server Key"),
        }
    }

    /// A verifier no password matches, the same for every attempt on `name` while `key` is
    /// the same: an unknown role answers like a known one with a wrong password.
    pub fn impostor(name: &str, key: &[u8]) -> ScramSecret {
        let seed = hmac_sha256(key, name.as_bytes());
        ScramSecret {
            salt: seed[..16].to_vec(),
            iterations: SCRAM_ITERATIONS,
            stored_key: hmac_sha256(&seed, b"stored"),
            server_key: hmac_sha256(&seed, b"server"),
        }
    }

    /// Whether `proof` (the client's `ClientKey XOR ClientSignature`) proves the password for
    /// `auth_message`, compared in constant time.
    pub fn verifies(&self, auth_message: &[u8], proof: &[u8]) -> bool {
        let signature = hmac_sha256(&self.stored_key, auth_message);
        if proof.len() != signature.len() {
            return false;
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let hashed = digest::digest(&digest::SHA256, &client_key);
        same_bytes(hashed.as_ref(), &self.stored_key)
    }

    /// The server's proof for `auth_message`: `HMAC(ServerKey, AuthMessage)`.
    pub fn server_signature(&self, auth_message: &[u8]) -> Vec<u8> {
        hmac_sha256(&self.server_key, auth_message)
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message)
        .as_ref()
        .to_vec()
}

/// Equality in time that does not depend on where the inputs differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange (user "user", password "pencil").
    #[test]
    fn verifies_the_rfc_7677_example() {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = gen_salted_password("pencil", &salt, 4096);
        let secret = ScramSecret::from_salted_password(&salted, salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
             r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
             c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = STANDARD
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert!(secret.verifies(auth_message.as_bytes(), &proof));
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert!(!secret.verifies(auth_message.as_bytes(), &wrong));
        assert_eq!(
            STANDARD.encode(secret.server_signature(auth_message.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn impostors_are_stable_per_name_and_match_nothing() {
        let key = b"server key";
        assert_eq!(
            ScramSecret::impostor("ghost", key),
            ScramSecret::impostor("ghost", key)
        );
        assert_ne!(
            ScramSecret::impostor("ghost", key).salt,
            ScramSecret::impostor("other", key).salt
        );
    }
}
