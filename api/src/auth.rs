//! Bearer tokens and roles. The config keeps only each token's SHA-256; a
//! presented token is hashed and compared with every configured hash in
//! constant time, so neither a match nor its position leaks through timing.

use std::fmt;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::error::Error;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads capacity, assets, readings and sources (engineers, the map).
    Viewer,
    /// Also asks for schemes and reads applications.
    Planner,
    /// The business hall's workflow system: applications and reservations.
    Workflow,
    /// Delivers readings.
    Ingest,
    /// Everything, the network included.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Planner,
        Role::Workflow,
        Role::Ingest,
        Role::Admin,
    ];

    /// The name in configs and tokens.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Planner => "planner",
            Role::Workflow => "workflow",
            Role::Ingest => "ingest",
            Role::Admin => "admin",
        }
    }

    /// The role a name gives.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether the role grants `permission`.
    pub fn may(self, permission: Permission) -> bool {
        use Role::*;
        match permission {
            Permission::View => matches!(self, Viewer | Planner | Workflow | Admin),
            Permission::Plan => matches!(self, Planner | Workflow | Admin),
            Permission::Workflow => matches!(self, Workflow | Admin),
            Permission::Ingest => matches!(self, Ingest | Admin),
            Permission::Admin => self == Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs (`shared/spec/api.md`'s role column; `admin` may do all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Capacity, assets, readings, sources: viewer and up.
    View,
    /// Schemes and applications read: planner or workflow.
    Plan,
    /// Applications and reservations changed, events: workflow.
    Workflow,
    /// Readings delivered: ingest.
    Ingest,
    /// The network replaced: admin.
    Admin,
}

/// SHA-256 of a token, as hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits) for `role`.
pub fn new_token(role: Role) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("hr_{}_{}", role.as_str(), hex::encode(bytes))
}

/// The config lines that grant `token` its role.
pub fn config_lines(name: &str, role: Role, token: &str) -> String {
    format!(
        "[[tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
        hash_token(token)
    )
}

/// One API token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (written to the audit trail).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: String,
}

/// The configured tokens, by hash.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], String, Role)>,
}

impl Tokens {
    /// From the config (hashes already validated as 64 hex digits).
    pub fn new(configured: &[TokenConfig]) -> Self {
        let entries = configured
            .iter()
            .filter_map(|t| {
                let bytes: [u8; 32] = hex::decode(&t.sha256).ok()?.try_into().ok()?;
                Some((bytes, t.name.clone(), t.role))
            })
            .collect();
        Self { entries }
    }

    /// Adds a token (the demo's own).
    pub fn add(&mut self, name: &str, role: Role, token: &str) {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.entries.push((digest, name.to_owned(), role));
    }

    /// Who holds `token`, if anyone.
    pub fn check(&self, token: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        // Every entry is compared, match or not.
        for (hash, name, role) in &self.entries {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(Caller {
                    name: name.clone(),
                    role: *role,
                });
            }
        }
        found
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name in the config (the audit trail's "who").
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// Refuses with 403 unless the caller's role grants `permission`.
    pub fn require(&self, permission: Permission, action: &'static str) -> Result<(), Error> {
        if self.role.may(permission) {
            Ok(())
        } else {
            Err(Error::Forbidden {
                role: self.role.as_str(),
                action,
            })
        }
    }
}

/// Any state that hands out the token table authenticates its requests (the
/// service's state does; a test's router may hold the table alone).
impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    Arc<Tokens>: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(Error::Unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or(Error::Unauthorized)?;
        Arc::<Tokens>::from_ref(state)
            .check(token)
            .ok_or(Error::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_known_by_its_hash_only() {
        let token = new_token(Role::Planner);
        let config = TokenConfig {
            name: "planner-1".into(),
            role: Role::Planner,
            sha256: hash_token(&token),
        };
        let tokens = Tokens::new(&[config]);
        let caller = tokens.check(&token).unwrap();
        assert_eq!(caller.role, Role::Planner);
        assert_eq!(caller.name, "planner-1");
        assert!(tokens.check(&format!("{token}x")).is_none());
        assert!(tokens.check("").is_none());
        assert_ne!(new_token(Role::Planner), token, "tokens are random");
    }

    #[test]
    fn roles_grant_what_the_spec_says() {
        assert!(Role::Viewer.may(Permission::View));
        assert!(!Role::Viewer.may(Permission::Plan));
        assert!(Role::Planner.may(Permission::Plan));
        assert!(!Role::Planner.may(Permission::Workflow));
        assert!(Role::Workflow.may(Permission::Workflow));
        assert!(!Role::Workflow.may(Permission::Ingest));
        assert!(Role::Ingest.may(Permission::Ingest));
        assert!(!Role::Ingest.may(Permission::View));
        assert!(
            Role::ALL
                .iter()
                .all(|r| r.may(Permission::Admin) == (*r == Role::Admin))
        );
        assert!(Role::Admin.may(Permission::Ingest) && Role::Admin.may(Permission::Workflow));
    }

    #[test]
    fn the_config_lines_hold_the_hash_not_the_token() {
        let token = new_token(Role::Workflow);
        let lines = config_lines("hall", Role::Workflow, &token);
        assert!(!lines.contains(&token));
        let parsed: toml::Table = toml::from_str(&lines).unwrap();
        let entry = &parsed["tokens"].as_array().unwrap()[0];
        assert_eq!(entry["sha256"].as_str().unwrap(), hash_token(&token));
        assert_eq!(entry["role"].as_str().unwrap(), "workflow");
    }
}
