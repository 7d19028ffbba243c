//! Whether one more workspace may be created: the repository allow-list, workspaces per user and
//! per group, and creations per user per hour.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::Limits;

pub const HOUR: Duration = Duration::from_secs(3600);

/// A refusal, answered with 403 or 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAllowed,
    UserQuota { limit: u32 },
    GroupQuota { group: String, limit: u32 },
    RateLimited { limit: u32, retry_after: Duration },
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotAllowed => "RepositoryNotAllowed",
            Refusal::UserQuota { .. } => "UserQuotaExceeded",
            Refusal::GroupQuota { .. } => "GroupQuotaExceeded",
            Refusal::RateLimited { .. } => "CreationRateLimited",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::NotAllowed => {
                "this repository is not on the list of repositories that get workspaces".into()
            }
            Refusal::UserQuota { limit } => format!(
                "you have {limit} workspaces, the most one user may have; unused ones are removed after the idle period"
            ),
            Refusal::GroupQuota { group, limit } => format!(
                "group {group:?} has {limit} workspaces, the most it may have"
            ),
            Refusal::RateLimited { limit, retry_after } => format!(
                "you created {limit} workspaces in the last hour, the most one user may; try again in {} s",
                retry_after.as_secs().max(1)
            ),
        }
    }
}

/// Who created one existing workspace, as its annotations say.
pub struct Creator<'a> {
    pub user: &'a str,
    /// `|`-separated group names.
    pub groups: &'a str,
}

pub fn check_allowed(limits: &Limits, repository_key: &str) -> Result<(), Refusal> {
    match &limits.allowed_repositories {
        Some(list) if !list.matches(repository_key) => Err(Refusal::NotAllowed),
        _ => Ok(()),
    }
}

/// Counts the existing workspaces of `user` and of each of `groups` that has a limit.
pub fn check_quota<'a>(
    limits: &Limits,
    user: &str,
    groups: &[String],
    existing: impl Iterator<Item = Creator<'a>>,
) -> Result<(), Refusal> {
    let limited: Vec<(&String, u32)> = groups
        .iter()
        .filter_map(|g| limits.workspaces_per_group.get(g).map(|limit| (g, *limit)))
        .collect();
    let mut mine: u32 = 0;
    let mut per_group: Vec<u32> = vec![0; limited.len()];
    for creator in existing {
        if creator.user == user {
            mine = mine.saturating_add(1);
        }
        if !limited.is_empty() {
            for group in creator.groups.split('|') {
                if let Some(i) = limited.iter().position(|(g, _)| g.as_str() == group) {
                    if let Some(count) = per_group.get_mut(i) {
                        *count = count.saturating_add(1);
                    }
                }
            }
        }
    }
    if mine >= limits.workspaces_per_user {
        return Err(Refusal::UserQuota {
            limit: limits.workspaces_per_user,
        });
    }
    for ((group, limit), count) in limited.iter().zip(per_group) {
        if count >= *limit {
            return Err(Refusal::GroupQuota {
                group: (*group).clone(),
                limit: *limit,
            });
        }
    }
    Ok(())
}

/// Creations per user in the last hour (this process's memory: a restart forgets them, the
/// per-user quota still holds).
#[derive(Debug, Default)]
pub struct CreationLog {
    per_user: HashMap<String, VecDeque<Instant>>,
}

impl CreationLog {
    /// `Err(retry_after)` when `user` already created `limit` workspaces within the hour.
    pub fn check(&mut self, user: &str, limit: u32, now: Instant) -> Result<(), Refusal> {
        self.forget_before(now);
        let Some(times) = self.per_user.get(user) else {
            return if limit == 0 {
                Err(Refusal::RateLimited {
                    limit,
                    retry_after: HOUR,
                })
            } else {
                Ok(())
            };
        };
        if times.len() < usize::try_from(limit).unwrap_or(usize::MAX) {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        let retry_after = HOUR.saturating_sub(now.saturating_duration_since(oldest));
        Err(Refusal::RateLimited { limit, retry_after })
    }

    pub fn record(&mut self, user: &str, now: Instant) {
        self.per_user
            .entry(user.to_string())
            .or_default()
            .push_back(now);
    }

    fn forget_before(&mut self, now: Instant) {
        self.per_user.retain(|_, times| {
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= HOUR)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn limits(per_user: u32, groups: &[(&str, u32)]) -> Limits {
        Limits {
            workspaces_per_user: per_user,
            workspaces_per_group: groups
                .iter()
                .map(|(g, n)| (g.to_string(), *n))
                .collect::<BTreeMap<_, _>>(),
            creations_per_user_per_hour: 2,
            allowed_repositories: None,
        }
    }

    fn creators<'a>(list: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = Creator<'a>> {
        list.iter().map(|(user, groups)| Creator { user, groups })
    }

    #[test]
    fn per_user_quota_counts_only_that_user() {
        let l = limits(2, &[]);
        let existing = [("alice", "dev"), ("bob", "dev"), ("alice", "dev")];
        assert_eq!(
            check_quota(&l, "alice", &[], creators(&existing)),
            Err(Refusal::UserQuota { limit: 2 })
        );
        assert_eq!(check_quota(&l, "bob", &[], creators(&existing)), Ok(()));
    }

    #[test]
    fn group_quota_counts_workspaces_created_by_members() {
        let l = limits(10, &[("students", 2)]);
        let existing = [("a", "students|x"), ("b", "staff"), ("c", "students")];
        let groups = vec!["students".to_string(), "other".to_string()];
        assert_eq!(
            check_quota(&l, "d", &groups, creators(&existing)),
            Err(Refusal::GroupQuota {
                group: "students".into(),
                limit: 2
            })
        );
        // Groups without a limit do not limit.
        assert_eq!(
            check_quota(&l, "d", &["staff".into()], creators(&existing)),
            Ok(())
        );
    }

    #[test]
    fn creation_rate_is_a_sliding_hour() {
        let mut log = CreationLog::default();
        let t0 = Instant::now();
        assert!(log.check("alice", 2, t0).is_ok());
        log.record("alice", t0);
        log.record("alice", t0 + Duration::from_secs(600));
        match log.check("alice", 2, t0 + Duration::from_secs(1200)) {
            Err(Refusal::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(2400))
            }
            other => panic!("{other:?}"),
        }
        assert!(log.check("bob", 2, t0).is_ok());
        assert!(log.check("alice", 2, t0 + HOUR).is_ok());
        assert!(log.check("carol", 0, t0).is_err());
    }
}
