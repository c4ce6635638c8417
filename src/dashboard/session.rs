//! Browser sessions, in memory: a random id in an HttpOnly, SameSite=Strict cookie, and
//! with it the CSRF token its forms carry. A restart forgets them (browsers sign in again).
//!
//! Two kinds, each with its own cap, so that visitors without the token (who get a session
//! for the sign-in form's CSRF token) can never push out the sessions of signed-in operators.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a session lasts after it is made, used or not.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions of each kind kept at most; the oldest goes first.
const MAX_PER_KIND: usize = 256;
/// The session cookie's name.
pub(crate) const COOKIE: &str = "aw_session";

/// One session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The token its forms carry (hex), compared with what a POST sends.
    pub(crate) csrf: String,
    /// Made by signing in with the dashboard token (else: a visitor's, or every session when
    /// no token is configured).
    pub(crate) signed_in: bool,
    created: Instant,
}

/// Every live session, by id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// The live session with this id.
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.lock();
        match sessions.get(id) {
            Some(session) if session.created.elapsed() < LIFETIME => Some(session.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// Starts a session; returns its id and itself.
    pub(crate) fn create(&self, signed_in: bool) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            csrf: random_hex(),
            signed_in,
            created: Instant::now(),
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.created.elapsed() < LIFETIME);
        let same_kind = sessions
            .values()
            .filter(|s| s.signed_in == signed_in)
            .count();
        if same_kind >= MAX_PER_KIND
            && let Some(oldest) = sessions
                .iter()
                .filter(|(_, s)| s.signed_in == signed_in)
                .min_by_key(|(_, s)| s.created)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// Ends a session.
    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the map leaves it whole (every change is one call).
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// 256 random bits as hex: a session id or a CSRF token.
fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// `Set-Cookie` for session `id`. `Secure` only when the operator says browsers reach the
/// dashboard over https: behind a TLS-terminating proxy the dashboard cannot tell, and a
/// `Secure` cookie over plain http is never sent back.
pub(crate) fn cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        LIFETIME.as_secs()
    )
}

/// `Set-Cookie` that removes the session cookie.
pub(crate) fn expired_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// The session id a request's `Cookie` headers carry.
pub(crate) fn id_from_cookies<'a>(headers: impl Iterator<Item = &'a str>) -> Option<String> {
    headers
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitors_sessions_never_push_out_signed_in_ones() {
        let sessions = Sessions::default();
        let (operator, _) = sessions.create(true);
        for _ in 0..MAX_PER_KIND * 2 {
            sessions.create(false);
        }
        assert!(sessions.get(&operator).is_some());
        let visitors = sessions.lock().values().filter(|s| !s.signed_in).count();
        assert_eq!(visitors, MAX_PER_KIND);
    }

    #[test]
    fn the_session_id_is_found_among_other_cookies() {
        let headers = ["theme=dark; aw_session=abc123 ", "x=y"];
        assert_eq!(
            id_from_cookies(headers.into_iter()),
            Some("abc123".to_owned())
        );
        assert_eq!(id_from_cookies(["aw_session="].into_iter()), None);
    }
}
