//! The PostgreSQL backend's identity tables: users, projects, members, robots, signing
//! keys. Each write is one statement (its own transaction); unique names are settled by
//! the unique indexes, whichever node inserts first.

use async_trait::async_trait;
use berth_core::{RobotPermission, Role};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgQuery, PgStore};
use crate::identity::{
    KeyStore, Member, Membership, NewRobot, NewUser, Project, ProjectStore, Robot, RobotStore,
    SigningKey, User, UserStore,
};
use crate::{MetaError, Result, now};

impl PgStore {
    /// Run an `INSERT … RETURNING id`; the new row's id, or `Conflict` naming `what` if a
    /// unique column is taken.
    async fn insert_returning_id(&self, statement: PgQuery<'_>, what: &str) -> Result<i64> {
        let row = statement
            .fetch_one(&self.pool)
            .await
            .map_err(|e| conflict_or(e, what))?;
        Ok(row.try_get(0)?)
    }

    /// Run one statement; how many rows it changed.
    async fn execute(&self, statement: PgQuery<'_>) -> Result<u64> {
        Ok(statement.execute(&self.pool).await?.rows_affected())
    }
}

fn conflict_or(e: sqlx::Error, what: &str) -> MetaError {
    if e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
    {
        MetaError::Conflict(what.to_owned())
    } else {
        e.into()
    }
}

fn user_row(row: &PgRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        realname: row.try_get("realname")?,
        comment: row.try_get("comment")?,
        password_hash: row.try_get("password_hash")?,
        sysadmin: row.try_get("sysadmin")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn project_row(row: &PgRow) -> Result<Project> {
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        public: row.try_get("public")?,
        owner_id: row.try_get("owner_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn role_column(row: &PgRow) -> Result<Role> {
    let id: i64 = row.try_get("role")?;
    Role::from_id(id).ok_or_else(|| MetaError::Corrupt(format!("role id {id}")))
}

fn robot_row(row: &PgRow) -> Result<Robot> {
    let permissions: String = row.try_get("permissions")?;
    let permissions: Vec<RobotPermission> = serde_json::from_str(&permissions)
        .map_err(|e| MetaError::Corrupt(format!("robot permissions: {e}")))?;
    Ok(Robot {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        project_id: row.try_get("project_id")?,
        secret_hash: row.try_get("secret_hash")?,
        disabled: row.try_get("disabled")?,
        expires_at: row.try_get("expires_at")?,
        permissions,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn permissions_json(permissions: &[RobotPermission]) -> Result<String> {
    serde_json::to_string(permissions).map_err(|e| MetaError::Corrupt(e.to_string()))
}

const USER_COLUMNS: &str =
    "id, name, email, realname, comment, password_hash, sysadmin, created_at, updated_at";
const PROJECT_COLUMNS: &str = "id, name, public, owner_id, created_at, updated_at";
const ROBOT_COLUMNS: &str = "id, name, description, project_id, secret_hash, disabled, expires_at, permissions, created_at, updated_at";

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, user: &NewUser) -> Result<i64> {
        let at = now();
        let statement = sqlx::query(
            "INSERT INTO users (name, email, realname, comment, password_hash, sysadmin, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&user.name)
        .bind(&user.email)
        .bind(&user.realname)
        .bind(&user.comment)
        .bind(&user.password_hash)
        .bind(user.sysadmin)
        .bind(at)
        .bind(at);
        self.insert_returning_id(statement, &format!("user {}", user.name))
            .await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_row).collect()
    }

    async fn update_user(&self, user: &User) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE users SET email = $1, realname = $2, comment = $3, password_hash = $4, sysadmin = $5, updated_at = $6
             WHERE id = $7",
        )
        .bind(&user.email)
        .bind(&user.realname)
        .bind(&user.comment)
        .bind(&user.password_hash)
        .bind(user.sysadmin)
        .bind(now())
        .bind(user.id);
        Ok(self.execute(statement).await? > 0)
    }

    async fn delete_user(&self, id: i64) -> Result<bool> {
        let statement = sqlx::query("DELETE FROM users WHERE id = $1").bind(id);
        Ok(self.execute(statement).await? > 0)
    }
}

#[async_trait]
impl ProjectStore for PgStore {
    async fn create_project(&self, name: &str, public: bool, owner_id: Option<i64>) -> Result<i64> {
        let at = now();
        let statement = sqlx::query(
            "INSERT INTO projects (name, public, owner_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(public)
        .bind(owner_id)
        .bind(at)
        .bind(at);
        self.insert_returning_id(statement, &format!("project {name}"))
            .await
    }

    async fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(project_row).transpose()
    }

    async fn project_by_id(&self, id: i64) -> Result<Option<Project>> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(project_row).transpose()
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(project_row).collect()
    }

    async fn update_project(&self, project: &Project) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE projects SET public = $1, owner_id = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(project.public)
        .bind(project.owner_id)
        .bind(now())
        .bind(project.id);
        Ok(self.execute(statement).await? > 0)
    }

    async fn delete_project(&self, id: i64) -> Result<bool> {
        let statement = sqlx::query("DELETE FROM projects WHERE id = $1").bind(id);
        Ok(self.execute(statement).await? > 0)
    }

    async fn project_repository_count(&self, name: &str) -> Result<u64> {
        // Names sort bytewise, so `<project>/` .. `<project>0` ('/' + 1) is exactly the
        // project's repositories, found on the name index.
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM repositories WHERE name > $1 AND name < $2")
                .bind(format!("{name}/"))
                .bind(format!("{name}0"))
                .fetch_one(&self.pool)
                .await?;
        Ok(count as u64)
    }

    async fn set_member(&self, project_id: i64, user_id: i64, role: Role) -> Result<()> {
        let at = now();
        let statement = sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.id())
        .bind(at)
        .bind(at);
        self.execute(statement).await?;
        Ok(())
    }

    async fn remove_member(&self, project_id: i64, user_id: i64) -> Result<bool> {
        let statement =
            sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
                .bind(project_id)
                .bind(user_id);
        Ok(self.execute(statement).await? > 0)
    }

    async fn members(&self, project_id: i64) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT m.project_id, m.user_id, u.name, m.role, m.created_at, m.updated_at
             FROM project_members m JOIN users u ON u.id = m.user_id
             WHERE m.project_id = $1 ORDER BY u.name",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Member {
                    project_id: row.try_get("project_id")?,
                    user_id: row.try_get("user_id")?,
                    user_name: row.try_get("name")?,
                    role: role_column(row)?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn memberships(&self, user_id: i64) -> Result<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT p.id, p.name, p.public, p.owner_id, p.created_at, p.updated_at, m.role
             FROM project_members m JOIN projects p ON p.id = m.project_id
             WHERE m.user_id = $1 ORDER BY p.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Membership {
                    project: project_row(row)?,
                    role: role_column(row)?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl RobotStore for PgStore {
    async fn create_robot(&self, robot: &NewRobot) -> Result<i64> {
        let at = now();
        let statement = sqlx::query(
            "INSERT INTO robots (name, description, project_id, secret_hash, disabled, expires_at, permissions, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(&robot.name)
        .bind(&robot.description)
        .bind(robot.project_id)
        .bind(&robot.secret_hash)
        .bind(robot.disabled)
        .bind(robot.expires_at)
        .bind(permissions_json(&robot.permissions)?)
        .bind(at)
        .bind(at);
        self.insert_returning_id(statement, &format!("robot {}", robot.name))
            .await
    }

    async fn robot_by_name(&self, name: &str) -> Result<Option<Robot>> {
        let sql = format!("SELECT {ROBOT_COLUMNS} FROM robots WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(robot_row).transpose()
    }

    async fn robot_by_id(&self, id: i64) -> Result<Option<Robot>> {
        let sql = format!("SELECT {ROBOT_COLUMNS} FROM robots WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(robot_row).transpose()
    }

    async fn list_robots(&self) -> Result<Vec<Robot>> {
        let sql = format!("SELECT {ROBOT_COLUMNS} FROM robots ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(robot_row).collect()
    }

    async fn update_robot(&self, robot: &Robot) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE robots SET description = $1, secret_hash = $2, disabled = $3, expires_at = $4, permissions = $5, updated_at = $6
             WHERE id = $7",
        )
        .bind(&robot.description)
        .bind(&robot.secret_hash)
        .bind(robot.disabled)
        .bind(robot.expires_at)
        .bind(permissions_json(&robot.permissions)?)
        .bind(now())
        .bind(robot.id);
        Ok(self.execute(statement).await? > 0)
    }

    async fn delete_robot(&self, id: i64) -> Result<bool> {
        let statement = sqlx::query("DELETE FROM robots WHERE id = $1").bind(id);
        Ok(self.execute(statement).await? > 0)
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        let rows = sqlx::query(
            "SELECT kid, algorithm, private_key, created_at, retired_at FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SigningKey {
                    kid: row.try_get("kid")?,
                    algorithm: row.try_get("algorithm")?,
                    private_key: row.try_get("private_key")?,
                    created_at: row.try_get("created_at")?,
                    retired_at: row.try_get("retired_at")?,
                })
            })
            .collect()
    }

    async fn add_signing_key(&self, key: &SigningKey) -> Result<bool> {
        let statement = sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, created_at, retired_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (kid) DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&key.private_key)
        .bind(key.created_at)
        .bind(key.retired_at);
        Ok(self.execute(statement).await? > 0)
    }

    async fn retire_signing_key(&self, kid: &str, at: i64) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL",
        )
        .bind(at)
        .bind(kid);
        Ok(self.execute(statement).await? > 0)
    }

    async fn delete_signing_keys_retired_before(&self, before: i64) -> Result<u64> {
        let statement = sqlx::query("DELETE FROM signing_keys WHERE retired_at < $1").bind(before);
        self.execute(statement).await
    }
}
