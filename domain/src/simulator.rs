//! The effective-access simulator: what a person or a group may call on every connector, and who
//! may call one tool, each answer with the rule that decided it. It decides with the live
//! snapshot's compiled rules (the proxy's own decision function) over the whole directory, so
//! people without a token are covered too.

use crate::model::{SimulatedSubject, Simulation, SubjectDecision, WhoCanCall};
use crate::snapshot::Snapshot;
use crate::store::Store;
use crate::{Error, Result};

/// Every tool of every connector for person `user_id` (id or user name).
pub async fn simulate_user(store: &Store, snap: &Snapshot, user: &str) -> Result<Simulation> {
    let u = match store.get_user(user).await {
        Ok(u) => u,
        Err(Error::NotFound(_)) => store
            .list_users()
            .await?
            .into_iter()
            .find(|u| u.user_name.eq_ignore_ascii_case(user))
            .ok_or(Error::NotFound("user"))?,
        Err(e) => return Err(e),
    };
    let groups: Vec<String> = store
        .all_memberships()
        .await?
        .into_iter()
        .filter(|(_, uid)| *uid == u.id)
        .map(|(g, _)| g)
        .collect();
    let connectors = if u.active {
        snap.simulate(&groups)
    } else {
        // A disabled person can call nothing; show why on every tool.
        let mut c = snap.simulate(&[]);
        for access in &mut c {
            for t in &mut access.tools {
                t.allowed = false;
                t.rule = format!("user \"{}\" is disabled", u.user_name);
            }
        }
        c
    };
    Ok(Simulation {
        subject: SimulatedSubject {
            kind: "user".into(),
            name: u.user_name,
            groups: group_names(snap, &groups),
            id: u.id,
        },
        connectors,
    })
}

/// Every tool of every connector for a member of this group alone (id or display name).
pub async fn simulate_group(store: &Store, snap: &Snapshot, group: &str) -> Result<Simulation> {
    let g = match store.get_group(group).await {
        Ok(g) => g,
        Err(Error::NotFound(_)) => store
            .list_groups()
            .await?
            .into_iter()
            .find(|g| g.display_name == group)
            .ok_or(Error::NotFound("group"))?,
        Err(e) => return Err(e),
    };
    let groups = vec![g.id.clone()];
    Ok(Simulation {
        subject: SimulatedSubject {
            kind: "group".into(),
            id: g.id,
            name: g.display_name.clone(),
            groups: vec![g.display_name],
        },
        connectors: snap.simulate(&groups),
    })
}

fn group_names(snap: &Snapshot, ids: &[String]) -> Vec<String> {
    let mut names: Vec<String> = ids
        .iter()
        .filter_map(|id| snap.group_name(id).map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Who may call `tool` on `connector`: each group on its own, and each person with all their
/// groups (disabled people are listed as denied).
pub async fn who_can_call(
    store: &Store,
    snap: &Snapshot,
    connector: &str,
    tool: &str,
) -> Result<WhoCanCall> {
    if snap.catalog_of(connector).is_none() {
        return Err(Error::NotFound("connector"));
    }
    let entry = snap.catalog_of(connector).and_then(|c| c.get(tool));
    let groups = snap
        .groups()
        .into_iter()
        .map(|(id, name)| {
            let v = snap.decide_for_groups(&[id.to_string()], connector, tool);
            SubjectDecision {
                kind: "group".into(),
                id: id.to_string(),
                name: name.to_string(),
                allowed: v.is_allowed(),
                rule: v.rule().to_string(),
            }
        })
        .collect();
    let memberships = store.all_memberships().await?;
    let mut users: Vec<SubjectDecision> = store
        .list_users()
        .await?
        .into_iter()
        .map(|u| {
            let gs: Vec<String> = memberships
                .iter()
                .filter(|(_, uid)| *uid == u.id)
                .map(|(g, _)| g.clone())
                .collect();
            let (allowed, rule) = if u.active {
                let v = snap.decide_for_groups(&gs, connector, tool);
                (v.is_allowed(), v.rule().to_string())
            } else {
                (false, format!("user \"{}\" is disabled", u.user_name))
            };
            SubjectDecision {
                kind: "user".into(),
                id: u.id,
                name: u.user_name,
                allowed,
                rule,
            }
        })
        .collect();
    users.sort_by(|a, b| b.allowed.cmp(&a.allowed).then(a.name.cmp(&b.name)));
    Ok(WhoCanCall {
        connector: connector.to_string(),
        tool: tool.to_string(),
        risk: entry.map(|e| e.facts.risk),
        review: entry.map(|e| e.facts.review),
        groups,
        users,
    })
}
