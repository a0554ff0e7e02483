//! SCRAM-SHA-256 logins (RFC 5802, RFC 7677, PostgreSQL's SASL messages) verified against the
//! stored `StoredKey`/`ServerKey` of [`ScramSecret`]. Written here because pgwire's SCRAM
//! needs each user's `SaltedPassword`, which is enough to log in as them: PostgreSQL never
//! stores it, and neither does TasteDB.
//!
//! Channel binding is not offered (`SCRAM-SHA-256` only). Every malformed message is a FATAL
//! `08P01`, never a panic. An unknown role, a role without `LOGIN` or without a password goes
//! through the same exchange as a wrong password (with a salt stable per name), and every
//! failure is logged with the client's address and answered `28P01` after [`FAILED_LOGIN_DELAY`].

use crate::roles::{ScramSecret, Users};
use crate::server::session::fatal;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Buf, Bytes, BytesMut};
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a failed login waits before it is answered (PostgreSQL's `auth_delay`).
pub const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);

const MECHANISM: &str = "SCRAM-SHA-256";

/// One connection's login.
pub struct ScramLogin {
    users: Users,
    parameters: Arc<DefaultServerParameterProvider>,
    pids: Arc<RandomPidSecretKeyGenerator>,
    /// Makes the verifiers of unknown roles (see [`ScramSecret::impostor`]).
    impostor_key: Arc<[u8; 32]>,
    state: Mutex<State>,
}

enum State {
    /// Waiting for SASLInitialResponse.
    Started,
    /// Server-first sent; waiting for client-final.
    Challenged(Box<Challenge>),
    Done,
}

struct Challenge {
    role: String,
    /// `None` when the role may not log in: the exchange goes on and fails at the end.
    secret: Option<ScramSecret>,
    impostor: ScramSecret,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramLogin {
    /// A login against `users`; process ids from `pids`.
    pub fn new(
        users: Users,
        parameters: Arc<DefaultServerParameterProvider>,
        pids: Arc<RandomPidSecretKeyGenerator>,
        impostor_key: Arc<[u8; 32]>,
    ) -> Self {
        ScramLogin {
            users,
            parameters,
            pids,
            impostor_key,
            state: Mutex::new(State::Started),
        }
    }

    /// Handles one message of the startup phase.
    pub async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                let mechanisms = vec![MECHANISM.to_string()];
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        mechanisms,
                    )))
                    .await?;
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let body = raw(message)?;
                let step = {
                    let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    match std::mem::replace(&mut *state, State::Done) {
                        State::Started => {
                            let role = client.metadata().get("user").cloned().unwrap_or_default();
                            let challenge = self.challenge(role, body)?;
                            let reply = Bytes::from(challenge.server_first.clone());
                            *state = State::Challenged(Box::new(challenge));
                            Step::Continue(reply)
                        }
                        State::Challenged(challenge) => Step::Final(challenge, body),
                        State::Done => return Err(violation("unexpected authentication message")),
                    }
                };
                match step {
                    Step::Continue(reply) => {
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLContinue(reply),
                            ))
                            .await?;
                        Ok(())
                    }
                    Step::Final(challenge, body) => self.finish(client, *challenge, body).await,
                }
            }
            _ => Ok(()),
        }
    }

    /// Reads SASLInitialResponse (mechanism, then client-first) and makes server-first.
    fn challenge(&self, role: String, mut body: BytesMut) -> PgWireResult<Challenge> {
        let mechanism = cstring(&mut body)?;
        if mechanism != MECHANISM {
            return Err(violation(&format!(
                "client selected an invalid SASL authentication mechanism \"{mechanism}\""
            )));
        }
        if body.remaining() < 4 {
            return Err(violation("SASLInitialResponse is too short"));
        }
        let length = body.get_i32();
        let data = usize::try_from(length)
            .ok()
            .filter(|&n| n == body.remaining())
            .ok_or_else(|| violation("SASLInitialResponse has an invalid length"))?;
        let client_first = text(&body[..data])?;
        let (gs2_header, client_first_bare) = split_gs2_header(client_first)?;
        let client_nonce = client_first_bare
            .split(',')
            .find_map(|part| part.strip_prefix("r="))
            .filter(|nonce| !nonce.is_empty())
            .ok_or_else(|| violation("client-first-message has no nonce"))?;
        if client_first_bare.starts_with("m=") {
            return Err(violation("SCRAM extensions are not supported"));
        }
        let impostor = ScramSecret::impostor(&role, self.impostor_key.as_ref());
        let secret = match self.users.get(&role) {
            Ok(Some(user)) if user.attributes.login => user.secret,
            _ => None,
        };
        let shown = secret.as_ref().unwrap_or(&impostor);
        let server_nonce: [u8; 18] = rand::random();
        let nonce = format!("{client_nonce}{}", STANDARD.encode(server_nonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&shown.salt),
            shown.iterations
        );
        Ok(Challenge {
            role,
            secret,
            impostor,
            gs2_header: gs2_header.to_string(),
            client_first_bare: client_first_bare.to_string(),
            server_first,
            nonce,
        })
    }

    /// Reads client-final, checks the proof, and either completes the login or fails it.
    async fn finish<C>(
        &self,
        client: &mut C,
        challenge: Challenge,
        body: BytesMut,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let client_final = text(&body)?;
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or_else(|| violation("client-final-message has no proof"))?;
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| violation("client-final-message has a malformed proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for part in without_proof.split(',') {
            if let Some(value) = part.strip_prefix("c=") {
                binding = Some(value);
            } else if let Some(value) = part.strip_prefix("r=") {
                nonce = Some(value);
            }
        }
        if binding != Some(STANDARD.encode(&challenge.gs2_header).as_str()) {
            return Err(violation("SCRAM channel binding check failed"));
        }
        if nonce != Some(challenge.nonce.as_str()) {
            return Err(violation("SCRAM nonce does not match"));
        }
        let auth_message = format!(
            "{},{},{}",
            challenge.client_first_bare, challenge.server_first, without_proof
        );
        let secret = challenge.secret.as_ref().unwrap_or(&challenge.impostor);
        let proven = secret.verifies(auth_message.as_bytes(), &proof);
        if !(proven && challenge.secret.is_some()) {
            tracing::warn!(
                role = %challenge.role,
                client = %client.socket_addr(),
                "password authentication failed"
            );
            tokio::time::sleep(FAILED_LOGIN_DELAY).await;
            return Err(fatal(
                "28P01",
                &format!(
                    "password authentication failed for user \"{}\"",
                    challenge.role
                ),
            ));
        }
        let verifier = STANDARD.encode(secret.server_signature(auth_message.as_bytes()));
        client
            .send(PgWireBackendMessage::Authentication(
                Authentication::SASLFinal(Bytes::from(format!("v={verifier}"))),
            ))
            .await?;
        let (pid, key) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, key);
        finish_authentication(client, self.parameters.as_ref()).await
    }
}

enum Step {
    Continue(Bytes),
    Final(Box<Challenge>, BytesMut),
}

fn violation(message: &str) -> PgWireError {
    fatal("08P01", message)
}

fn raw(message: PasswordMessageFamily) -> PgWireResult<BytesMut> {
    match message {
        PasswordMessageFamily::Raw(body) => Ok(body),
        _ => Err(violation("unexpected authentication message")),
    }
}

/// A NUL-terminated string at the start of `body`, consumed.
fn cstring(body: &mut BytesMut) -> PgWireResult<String> {
    let end = body
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| violation("SASLInitialResponse has no mechanism name"))?;
    let name = text(&body[..end])?.to_string();
    body.advance(end + 1);
    Ok(name)
}

fn text(bytes: &[u8]) -> PgWireResult<&str> {
    std::str::from_utf8(bytes).map_err(|_| violation("SCRAM message is not valid UTF-8"))
}

/// The gs2 header (`n,,` or `y,,`, with an optional authzid) and the client-first-bare after
/// it. `p=…` (channel binding) is refused: it is not offered.
fn split_gs2_header(client_first: &str) -> PgWireResult<(&str, &str)> {
    let mut parts = client_first.splitn(3, ',');
    let flag = parts.next().unwrap_or_default();
    let _authzid = parts.next();
    let bare = parts
        .next()
        .ok_or_else(|| violation("malformed SCRAM client-first-message"))?;
    match flag {
        "n" | "y" => {}
        _ if flag.starts_with("p=") => {
            return Err(violation(
                "channel binding is not supported: connect with channel_binding=disable or prefer",
            ));
        }
        _ => return Err(violation("malformed SCRAM client-first-message")),
    }
    let header = &client_first[..client_first.len() - bare.len()];
    Ok((header, bare))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gs2_headers_split_as_the_rfc_says() {
        assert_eq!(
            split_gs2_header("n,,n=u,r=abc").unwrap(),
            ("n,,", "n=u,r=abc")
        );
        assert_eq!(
            split_gs2_header("y,a=x,n=u,r=abc").unwrap(),
            ("y,a=x,", "n=u,r=abc")
        );
        for bad in ["", "n", "q,,n=u", "p=tls-server-end-point,,n=u,r=a"] {
            assert!(split_gs2_header(bad).is_err(), "{bad}");
        }
    }
}
