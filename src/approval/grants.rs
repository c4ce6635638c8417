//! Upload grants shared between jobs: spaces/infos/query grants a *user* upload right on the
//! approval space, so a grant one job just took serves the next job of the same originator
//! instead of a call per job (one of the four DingTalk API calls of a one-file job). Jobs of
//! one user that need a grant at once take turns: the first calls, the others use its grant,
//! so a backlog of one originator's jobs starts with one call instead of one per job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::GRANT_REFRESH_MS;

/// How old a grant another job took may be and still be used. Half the refresh age, so a
/// job that starts on a shared grant does not have to renew it again before its first
/// ticket; a grant DingTalk refuses early is renewed once when uploadInfos is refused.
const GRANT_SHARE_MS: i64 = GRANT_REFRESH_MS / 2;
/// Above this many originators the stale grants are dropped, so the map stays small.
const MAX_GRANTS: usize = 1024;

/// A grant: the approval space and when the call that granted it started (unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) space_id: i64,
    /// When spaces/infos/query granted it.
    pub(crate) granted_at_ms: i64,
}

/// The latest grant per originator userId. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub(crate) struct Grants {
    latest: Arc<Mutex<HashMap<String, Grant>>>,
    /// Per user, the turn to call for a grant, and how many grants were recorded.
    turns: Arc<Mutex<HashMap<String, UserTurns>>>,
}

/// One user's turn to call for a grant, and how many grants were recorded for them.
type UserTurns = (Arc<tokio::sync::Mutex<()>>, u64);

/// What [`Grants::turn`] found.
pub(crate) enum Turn {
    /// Another job recorded a grant while this one waited: use it.
    Shared(Grant),
    /// This job calls; others of the same user wait until it is dropped.
    Mine(tokio::sync::OwnedMutexGuard<()>),
}

impl Grants {
    /// The grant for `user` if one was taken less than [`GRANT_SHARE_MS`] before `now_ms`.
    pub(crate) fn fresh(&self, user: &str, now_ms: i64) -> Option<Grant> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest
            .get(user)
            .copied()
            .filter(|grant| is_fresh(grant, now_ms))
    }

    /// Waits for the turn to call for `user`'s grant; a grant recorded by the job that had
    /// the turn meanwhile is handed over instead.
    pub(crate) async fn turn(&self, user: &str) -> Turn {
        let (lock, seen) = {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            if turns.len() >= MAX_GRANTS && !turns.contains_key(user) {
                // Only turns nobody holds or waits for.
                turns.retain(|_, (lock, _)| Arc::strong_count(lock) > 1);
            }
            let (lock, recorded) = turns.entry(user.to_owned()).or_default();
            (Arc::clone(lock), *recorded)
        };
        let guard = lock.lock_owned().await;
        if self.recorded(user) != seen {
            let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(grant) = latest.get(user) {
                return Turn::Shared(*grant);
            }
        }
        Turn::Mine(guard)
    }

    fn recorded(&self, user: &str) -> u64 {
        let turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        turns.get(user).map_or(0, |(_, recorded)| *recorded)
    }

    /// Records a grant for `user`, unless a newer one is already recorded.
    pub(crate) fn record(&self, user: &str, grant: Grant) {
        {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            turns.entry(user.to_owned()).or_default().1 += 1;
        }
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if latest.len() >= MAX_GRANTS && !latest.contains_key(user) {
            latest.retain(|_, kept| is_fresh(kept, grant.granted_at_ms));
        }
        let slot = latest.entry(user.to_owned()).or_insert(grant);
        if grant.granted_at_ms >= slot.granted_at_ms {
            *slot = grant;
        }
    }
}

fn is_fresh(grant: &Grant, now_ms: i64) -> bool {
    (0..GRANT_SHARE_MS).contains(&(now_ms - grant.granted_at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(space_id: i64, granted_at_ms: i64) -> Grant {
        Grant {
            space_id,
            granted_at_ms,
        }
    }

    #[test]
    fn a_grant_serves_the_same_user_until_it_is_half_the_refresh_age() {
        let grants = Grants::default();
        grants.record("u1", grant(7, 1_000));
        assert_eq!(grants.fresh("u1", 1_000), Some(grant(7, 1_000)));
        assert_eq!(
            grants.fresh("u1", 1_000 + GRANT_SHARE_MS - 1),
            Some(grant(7, 1_000))
        );
        assert_eq!(grants.fresh("u1", 1_000 + GRANT_SHARE_MS), None);
        assert_eq!(grants.fresh("u2", 1_000), None, "grants are per user");
        // A clock that went back does not make an old grant look young.
        assert_eq!(grants.fresh("u1", 999), None);
    }

    #[test]
    fn an_older_grant_does_not_replace_a_newer_one() {
        let grants = Grants::default();
        grants.record("u1", grant(7, 5_000));
        grants.record("u1", grant(8, 4_000));
        assert_eq!(grants.fresh("u1", 5_001), Some(grant(7, 5_000)));
        grants.record("u1", grant(9, 6_000));
        assert_eq!(grants.fresh("u1", 6_001), Some(grant(9, 6_000)));
    }

    #[tokio::test]
    async fn jobs_of_one_user_needing_a_grant_at_once_wait_for_the_first_and_share_its_grant() {
        let grants = Grants::default();
        let Turn::Mine(first) = grants.turn("u1").await else {
            panic!("the first job calls")
        };
        let waiting = tokio::spawn({
            let grants = grants.clone();
            async move { grants.turn("u1").await }
        });
        let Turn::Mine(other_user) = grants.turn("u2").await else {
            panic!("another user's job does not wait")
        };
        drop(other_user);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second job of u1 waits");
        grants.record("u1", grant(7, 1_000));
        drop(first);
        match waiting.await.unwrap() {
            Turn::Shared(shared) => assert_eq!(shared, grant(7, 1_000)),
            Turn::Mine(_) => panic!("the second job would call again"),
        }
        // The turn of a job whose call failed (nothing recorded) passes on to the next.
        let Turn::Mine(failed) = grants.turn("u3").await else {
            panic!()
        };
        let next = tokio::spawn({
            let grants = grants.clone();
            async move { matches!(grants.turn("u3").await, Turn::Mine(_)) }
        });
        drop(failed);
        assert!(next.await.unwrap(), "it calls itself");
    }

    #[test]
    fn stale_grants_are_dropped_once_many_users_are_recorded() {
        let grants = Grants::default();
        for user in 0..MAX_GRANTS {
            grants.record(&format!("old{user}"), grant(1, 0));
        }
        grants.record("new", grant(1, GRANT_SHARE_MS * 4));
        let kept = grants.latest.lock().unwrap();
        assert_eq!(kept.len(), 1);
        assert!(kept.contains_key("new"));
    }
}
