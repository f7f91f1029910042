//! Who may do what: users, projects and their members, robot accounts and the token
//! service's signing keys. Stored rows only; password hashing, validation and the access
//! decision live in `berth_auth`.

use async_trait::async_trait;
use berth_core::{RobotPermission, Role};

use crate::Result;

/// A user account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub realname: String,
    pub comment: String,
    /// argon2id, PHC string format. Never logged or shown.
    pub password_hash: String,
    pub sysadmin: bool,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub realname: String,
    pub comment: String,
    pub password_hash: String,
    pub sysadmin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub public: bool,
    pub owner_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A user's role in a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub project_id: i64,
    pub user_id: i64,
    pub user_name: String,
    pub role: Role,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A project and the role a user holds in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub project: Project,
    pub role: Role,
}

/// A robot account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Robot {
    pub id: i64,
    /// Full name: `robot$<project>+<name>` or `robot$<name>`.
    pub name: String,
    pub description: String,
    /// Set for project-level robots.
    pub project_id: Option<i64>,
    /// argon2id of the secret, PHC string format.
    pub secret_hash: String,
    pub disabled: bool,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<i64>,
    pub permissions: Vec<RobotPermission>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A robot to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRobot {
    pub name: String,
    pub description: String,
    pub project_id: Option<i64>,
    pub secret_hash: String,
    pub disabled: bool,
    pub expires_at: Option<i64>,
    pub permissions: Vec<RobotPermission>,
}

/// A token-signing key. Retired keys still verify the tokens they signed until those expire.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: String,
    /// PKCS#8 DER. Never logged.
    pub private_key: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Create a user; [`crate::MetaError::Conflict`] if the name is taken. Returns its id.
    async fn create_user(&self, user: &NewUser) -> Result<i64>;
    async fn user_by_name(&self, name: &str) -> Result<Option<User>>;
    async fn user_by_id(&self, id: i64) -> Result<Option<User>>;
    /// Every user, by name.
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Store a user's email, realname, comment, password hash and sysadmin flag.
    async fn update_user(&self, user: &User) -> Result<bool>;
    async fn delete_user(&self, id: i64) -> Result<bool>;
}

#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Create a project; [`crate::MetaError::Conflict`] if the name is taken. Returns its id.
    async fn create_project(&self, name: &str, public: bool, owner_id: Option<i64>) -> Result<i64>;
    async fn project_by_name(&self, name: &str) -> Result<Option<Project>>;
    async fn project_by_id(&self, id: i64) -> Result<Option<Project>>;
    /// Every project, by name.
    async fn list_projects(&self) -> Result<Vec<Project>>;
    /// Store a project's public flag and owner.
    async fn update_project(&self, project: &Project) -> Result<bool>;
    async fn delete_project(&self, id: i64) -> Result<bool>;
    /// How many repositories the project holds (a project with any cannot be deleted).
    async fn project_repository_count(&self, name: &str) -> Result<u64>;
    /// Add a member or change its role.
    async fn set_member(&self, project_id: i64, user_id: i64, role: Role) -> Result<()>;
    async fn remove_member(&self, project_id: i64, user_id: i64) -> Result<bool>;
    /// A project's members, by user name.
    async fn members(&self, project_id: i64) -> Result<Vec<Member>>;
    /// Every project the user is a member of, with the role.
    async fn memberships(&self, user_id: i64) -> Result<Vec<Membership>>;
}

#[async_trait]
pub trait RobotStore: Send + Sync {
    /// Create a robot; [`crate::MetaError::Conflict`] if the name is taken. Returns its id.
    async fn create_robot(&self, robot: &NewRobot) -> Result<i64>;
    async fn robot_by_name(&self, name: &str) -> Result<Option<Robot>>;
    async fn robot_by_id(&self, id: i64) -> Result<Option<Robot>>;
    /// Every robot, by name.
    async fn list_robots(&self) -> Result<Vec<Robot>>;
    /// Store a robot's description, secret hash, disabled flag, expiry and permissions.
    async fn update_robot(&self, robot: &Robot) -> Result<bool>;
    async fn delete_robot(&self, id: i64) -> Result<bool>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKey>>;
    /// Add a key unless one with its kid exists; whether it was added.
    async fn add_signing_key(&self, key: &SigningKey) -> Result<bool>;
    /// Mark a key retired at `at` (it no longer signs; it verifies until its tokens expire).
    async fn retire_signing_key(&self, kid: &str, at: i64) -> Result<bool>;
    /// Forget keys retired before `before`.
    async fn delete_signing_keys_retired_before(&self, before: i64) -> Result<u64>;
}

/// Everything identity needs from the metadata database (retention policies too: a
/// policy's project decides who may change it).
pub trait IdentityStore:
    UserStore + ProjectStore + RobotStore + KeyStore + crate::retention::RetentionStore
{
}
impl<T: UserStore + ProjectStore + RobotStore + KeyStore + crate::retention::RetentionStore>
    IdentityStore for T
{
}
