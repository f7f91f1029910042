//! The operator CLI for accounts and projects: `berth user|project|member|robot|keys …`.
//! It opens the metadata database directly, so it works on a stopped registry and on a
//! running one (SQLite takes turns between processes, PostgreSQL serves several; a running
//! server sees the change within its identity cache's few seconds). Every operation goes through
//! `berth_auth::IdentityService`, the same place the management API calls. Secrets are read
//! from standard input or a prompt, never from the command line. Each change is audited as
//! the API's are, by the operating-system user, from `cli`.

use std::io::{BufRead, IsTerminal, Write};

use berth_audit::{Audit, AuditEvent, AuditSettings, Client, JsonLines, Operation, ResourceType};
use berth_auth::identity::{NewAccount, RobotSpec, project_permissions};
use berth_auth::token::KeyRing;
use berth_auth::{IdentityError, IdentityService};
use berth_core::access::RobotName;
use berth_core::{RobotPermission, Role};
use clap::{Args, Subcommand};

use crate::Metadata;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from stdin or a prompt.
    Add {
        name: String,
        /// Make the user a system administrator.
        #[arg(long)]
        admin: bool,
        #[arg(long, default_value = "")]
        email: String,
    },
    /// Set a user's password (read from stdin or a prompt).
    Passwd {
        name: String,
    },
    /// Grant or remove system administrator rights.
    Admin {
        name: String,
        #[arg(long, action = clap::ArgAction::Set, default_value_t = true)]
        enabled: bool,
    },
    List,
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum ProjectCommand {
    /// Create a project (private unless --public).
    Create {
        name: String,
        #[arg(long)]
        public: bool,
        /// A user who becomes the project's admin.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Make a project public or private.
    Public {
        name: String,
        #[arg(action = clap::ArgAction::Set)]
        public: bool,
    },
    List,
    /// Delete a project that holds no repositories.
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum MemberCommand {
    /// Add a user to a project with a role (projectAdmin, maintainer, developer, guest,
    /// limitedGuest, or Harbor's ids 1-5), or change its role.
    Add {
        project: String,
        user: String,
        role: String,
    },
    List {
        project: String,
    },
    Remove {
        project: String,
        user: String,
    },
}

#[derive(Subcommand)]
pub enum RobotCommand {
    /// Create a robot account and print its secret once. `robot$<project>+<name>` for a
    /// project robot, `robot$<name>` (with --project for each project) for a system one.
    Create {
        /// Full name (`robot$team+ci`) or, with --project, the short name.
        name: String,
        /// Projects a system robot may act in (`*` for all); a project robot's own project.
        #[arg(long)]
        project: Vec<String>,
        /// Repository actions: pull, push, delete.
        #[arg(long, value_delimiter = ',', default_value = "pull")]
        actions: Vec<String>,
        /// Days until it expires; -1 never, 0 the default (30 days).
        #[arg(long, default_value_t = -1)]
        days: i64,
        #[arg(long, default_value = "")]
        description: String,
        /// Read the secret from stdin instead of generating one.
        #[arg(long)]
        secret_from_stdin: bool,
    },
    List,
    Delete {
        name: String,
    },
    /// Give a robot a new secret (printed once).
    Refresh {
        name: String,
    },
    /// Disable or enable a robot.
    Disable {
        name: String,
        #[arg(action = clap::ArgAction::Set, default_value_t = true)]
        disabled: bool,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Start signing tokens with a new key; the old one keeps verifying until its tokens
    /// expire (restart or wait for running servers to pick it up).
    Rotate {
        /// Forget keys retired longer ago than this many seconds (default: a day).
        #[arg(long, default_value_t = 86_400)]
        forget_after: i64,
    },
    List,
}

/// What every admin command needs besides its own arguments.
#[derive(Args)]
pub struct Target {
    #[command(flatten)]
    pub flags: crate::Flags,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Read a secret from stdin: with a prompt and no echo on a terminal, else one line.
fn read_secret(prompt: &str, confirm: bool) -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the secret from stdin: {e}"))?;
        let secret = line.trim_end_matches(['\r', '\n']).to_owned();
        if secret.is_empty() {
            return Err("no secret on stdin".into());
        }
        return Ok(secret);
    }
    let first = prompt_hidden(prompt)?;
    if confirm && prompt_hidden("Again: ")? != first {
        return Err("the two entries differ".into());
    }
    Ok(first)
}

fn prompt_hidden(prompt: &str) -> Result<String, String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(&stdin).map_err(|e| format!("cannot read terminal settings: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)
        .map_err(|e| format!("cannot turn off echo: {e}"))?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    read.map_err(|e| format!("cannot read the secret: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn explain(e: IdentityError) -> String {
    e.to_string()
}

/// The identity service on the configured database, and the audit log its changes go to.
/// JSON lines go to the configured file only: the CLI's own output is on stdout.
async fn service(flags: &crate::Flags) -> Result<(IdentityService, Metadata, Audit), String> {
    let config = flags.load().map_err(|e| e.to_string())?;
    let store = crate::open_metadata(&config).await?;
    let audit = if config.audit_enabled {
        let jsonl = match &config.audit_jsonl {
            JsonLines::File(path) => JsonLines::File(path.clone()),
            _ => JsonLines::Off,
        };
        let settings = AuditSettings {
            jsonl,
            retention: None,
            ..Default::default()
        };
        Audit::start(store.store(), settings).await?
    } else {
        Audit::off()
    };
    Ok((IdentityService::new(store.store()), store, audit))
}

/// Who runs the CLI: the operating-system user, else `cli`.
fn os_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "cli".into())
}

/// Audit a change that succeeded, write the audit log, and close the database.
async fn finish<T>(
    result: &Result<T, IdentityError>,
    change: Option<(Operation, ResourceType, String)>,
    audit: Audit,
    store: Metadata,
) {
    if result.is_ok()
        && let Some((operation, resource_type, resource)) = change
    {
        audit.record(AuditEvent::new(
            os_user(),
            Client::Cli,
            operation,
            resource_type,
            resource,
        ));
    }
    audit.shutdown().await;
    store.close().await;
}

pub async fn user(command: UserCommand, flags: &crate::Flags) -> Result<(), String> {
    let (identity, store, audit) = service(flags).await?;
    let change = match &command {
        UserCommand::Add { name, .. } => Some((Operation::Create, name)),
        UserCommand::Passwd { name } | UserCommand::Admin { name, .. } => {
            Some((Operation::Update, name))
        }
        UserCommand::Delete { name } => Some((Operation::Delete, name)),
        UserCommand::List => None,
    }
    .map(|(op, name)| (op, ResourceType::User, name.clone()));
    let result = match command {
        UserCommand::Add { name, admin, email } => {
            let password = read_secret(&format!("Password for {name}: "), true)?;
            identity
                .add_user(NewAccount {
                    name: name.clone(),
                    password,
                    email,
                    sysadmin: admin,
                    ..Default::default()
                })
                .await
                .map(|u| println!("created user {} (id {})", u.name, u.id))
        }
        UserCommand::Passwd { name } => {
            let password = read_secret(&format!("New password for {name}: "), true)?;
            identity
                .set_password(&name, &password)
                .await
                .map(|()| println!("password of {name} changed"))
        }
        UserCommand::Admin { name, enabled } => {
            identity.set_sysadmin(&name, enabled).await.map(|()| {
                println!(
                    "{name} is {}a system administrator",
                    if enabled { "" } else { "not " }
                )
            })
        }
        UserCommand::List => identity.users().await.map(|users| {
            println!("{:<6} {:<24} {:<6} email", "id", "name", "admin");
            for u in users {
                println!("{:<6} {:<24} {:<6} {}", u.id, u.name, u.sysadmin, u.email);
            }
        }),
        UserCommand::Delete { name } => identity
            .delete_user(&name)
            .await
            .map(|()| println!("deleted user {name}")),
    };
    finish(&result, change, audit, store).await;
    result.map_err(explain)
}

pub async fn project(command: ProjectCommand, flags: &crate::Flags) -> Result<(), String> {
    let (identity, store, audit) = service(flags).await?;
    let change = match &command {
        ProjectCommand::Create { name, .. } => Some((Operation::Create, name)),
        ProjectCommand::Public { name, .. } => Some((Operation::Update, name)),
        ProjectCommand::Delete { name } => Some((Operation::Delete, name)),
        ProjectCommand::List => None,
    }
    .map(|(op, name)| (op, ResourceType::Project, name.clone()));
    let result = match command {
        ProjectCommand::Create {
            name,
            public,
            owner,
        } => identity
            .create_project(&name, public, owner.as_deref())
            .await
            .map(|p| {
                println!(
                    "created {} project {} (id {})",
                    if p.public { "public" } else { "private" },
                    p.name,
                    p.id
                )
            }),
        ProjectCommand::Public { name, public } => identity
            .set_public(&name, public)
            .await
            .map(|()| println!("{name} is {}", if public { "public" } else { "private" })),
        ProjectCommand::List => identity.projects().await.map(|projects| {
            println!("{:<6} {:<32} public", "id", "name");
            for p in projects {
                println!("{:<6} {:<32} {}", p.id, p.name, p.public);
            }
        }),
        ProjectCommand::Delete { name } => identity
            .delete_project(&name)
            .await
            .map(|()| println!("deleted project {name}")),
    };
    finish(&result, change, audit, store).await;
    result.map_err(explain)
}

pub async fn member(command: MemberCommand, flags: &crate::Flags) -> Result<(), String> {
    let (identity, store, audit) = service(flags).await?;
    let change = match &command {
        MemberCommand::Add { project, user, .. } => Some((Operation::Create, project, user)),
        MemberCommand::Remove { project, user } => Some((Operation::Delete, project, user)),
        MemberCommand::List { .. } => None,
    }
    .map(|(op, project, user)| (op, ResourceType::Member, format!("{project}/{user}")));
    let result = match command {
        MemberCommand::Add {
            project,
            user,
            role,
        } => {
            let role: Role = role.parse()?;
            identity
                .set_member(&project, &user, role)
                .await
                .map(|()| println!("{user} is {role} of {project}"))
        }
        MemberCommand::List { project } => identity.members(&project).await.map(|members| {
            println!("{:<24} role", "user");
            for m in members {
                println!("{:<24} {} ({})", m.user_name, m.role, m.role.id());
            }
        }),
        MemberCommand::Remove { project, user } => identity
            .remove_member(&project, &user)
            .await
            .map(|()| println!("{user} removed from {project}")),
    };
    finish(&result, change, audit, store).await;
    result.map_err(explain)
}

pub async fn robot(command: RobotCommand, flags: &crate::Flags) -> Result<(), String> {
    let (identity, store, audit) = service(flags).await?;
    let change = match &command {
        RobotCommand::Create {
            name,
            project,
            actions,
            ..
        } => robot_spec(name, project, actions)
            .ok()
            .map(|(full, _)| (Operation::Create, full.to_string())),
        RobotCommand::Delete { name } => Some((Operation::Delete, name.clone())),
        RobotCommand::Refresh { name } | RobotCommand::Disable { name, .. } => {
            Some((Operation::Update, name.clone()))
        }
        RobotCommand::List => None,
    }
    .map(|(op, name)| (op, ResourceType::Robot, name));
    let result = match command {
        RobotCommand::Create {
            name,
            project,
            actions,
            days,
            description,
            secret_from_stdin,
        } => {
            let (name, permissions) = robot_spec(&name, &project, &actions)?;
            let secret = if secret_from_stdin {
                Some(read_secret("Secret: ", true)?)
            } else {
                None
            };
            identity
                .create_robot(RobotSpec {
                    name,
                    description,
                    duration_days: Some(days),
                    permissions,
                    secret,
                    disabled: false,
                })
                .await
                .map(|(robot, secret)| {
                    println!("name:   {}", robot.name);
                    println!("secret: {secret}");
                    eprintln!("(the secret is shown this once; keep it safe)");
                })
        }
        RobotCommand::List => identity.robots().await.map(|robots| {
            println!(
                "{:<6} {:<32} {:<9} {:<12} permissions",
                "id", "name", "disabled", "expires"
            );
            for r in robots {
                let expires = r.expires_at.map_or_else(
                    || "never".to_string(),
                    |at| berth_auth::access::rfc3339(at)[..10].to_string(),
                );
                let permissions: Vec<String> = r
                    .permissions
                    .iter()
                    .map(|p| {
                        let actions: Vec<&str> =
                            p.access.iter().map(|a| a.action.as_str()).collect();
                        format!("{}:{}", p.namespace, actions.join(","))
                    })
                    .collect();
                println!(
                    "{:<6} {:<32} {:<9} {:<12} {}",
                    r.id,
                    r.name,
                    r.disabled,
                    expires,
                    permissions.join(" ")
                );
            }
        }),
        RobotCommand::Delete { name } => identity
            .delete_robot(&name)
            .await
            .map(|()| println!("deleted robot {name}")),
        RobotCommand::Refresh { name } => {
            identity
                .refresh_robot_secret(&name, None)
                .await
                .map(|secret| {
                    println!("secret: {secret}");
                    eprintln!("(the secret is shown this once; keep it safe)");
                })
        }
        RobotCommand::Disable { name, disabled } => identity
            .set_robot_disabled(&name, disabled)
            .await
            .map(|()| {
                println!(
                    "{name} is {}",
                    if disabled { "disabled" } else { "enabled" }
                )
            }),
    };
    finish(&result, change, audit, store).await;
    result.map_err(explain)
}

/// The robot's full name and permissions from the command line.
fn robot_spec(
    name: &str,
    projects: &[String],
    actions: &[String],
) -> Result<(RobotName, Vec<RobotPermission>), String> {
    for action in actions {
        if !["pull", "push", "delete"].contains(&action.as_str()) {
            return Err(format!(
                "unknown action {action:?}: use pull, push or delete"
            ));
        }
    }
    let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
    let full = if name.starts_with(berth_core::access::ROBOT_PREFIX) {
        name.to_owned()
    } else if projects.len() == 1 && projects[0] != "*" {
        format!("robot${}+{name}", projects[0])
    } else {
        format!("robot${name}")
    };
    let parsed = RobotName::parse(&full).ok_or_else(|| format!("invalid robot name {full:?}"))?;
    let permissions = match &parsed {
        RobotName::Project { project, .. } => project_permissions(project, &actions),
        RobotName::System { .. } => {
            if projects.is_empty() {
                return Err("a system robot needs --project (a project name, or * for all)".into());
            }
            projects
                .iter()
                .flat_map(|p| project_permissions(p, &actions))
                .collect()
        }
    };
    Ok((parsed, permissions))
}

pub async fn keys(command: KeysCommand, flags: &crate::Flags) -> Result<(), String> {
    let (_, metadata, audit) = service(flags).await?;
    let store = metadata.store();
    audit.shutdown().await;
    let result = async {
        match command {
            KeysCommand::Rotate { forget_after } => {
                let at = now();
                let key = KeyRing::generate_key(at).map_err(|e| e.to_string())?;
                for old in store.signing_keys().await.map_err(|e| e.to_string())? {
                    if old.retired_at.is_none() {
                        store
                            .retire_signing_key(&old.kid, at)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                store
                    .add_signing_key(&key)
                    .await
                    .map_err(|e| e.to_string())?;
                let forgotten = store
                    .delete_signing_keys_retired_before(at - forget_after)
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "new signing key {} (forgot {forgotten} long-retired keys)",
                    key.kid
                );
                Ok(())
            }
            KeysCommand::List => {
                for key in store.signing_keys().await.map_err(|e| e.to_string())? {
                    let state = match key.retired_at {
                        Some(at) => format!("retired {}", berth_auth::access::rfc3339(at)),
                        None => "signing".into(),
                    };
                    println!("{} {} {state}", key.kid, key.algorithm);
                }
                Ok(())
            }
        }
    }
    .await;
    metadata.close().await;
    result
}

#[cfg(test)]
mod tests {
    use berth_meta::AuditQuery;

    use super::*;

    #[tokio::test]
    async fn the_operators_changes_are_audited_as_the_os_user_from_cli() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flags = crate::Flags {
            config: None,
            addr: None,
            data_dir: Some(dir.path().to_owned()),
            delete_enabled: None,
            anonymous_write: None,
            htpasswd: None,
            auth_mode: None,
        };
        let create = ProjectCommand::Create {
            name: "team".into(),
            public: false,
            owner: None,
        };
        project(create, &flags).await.expect("created");
        project(ProjectCommand::List, &flags).await.expect("listed");
        // A change that fails is no entry.
        let missing = MemberCommand::Remove {
            project: "team".into(),
            user: "nobody".into(),
        };
        assert!(member(missing, &flags).await.is_err());
        let config = flags.load().expect("config");
        let metadata = crate::open_metadata(&config).await.expect("open");
        let (entries, total) = metadata
            .store()
            .audit_entries(&AuditQuery::default())
            .await
            .expect("entries");
        metadata.close().await;
        assert_eq!(total, 1);
        let entry = &entries[0].record;
        assert_eq!(
            (
                entry.operation.as_str(),
                entry.resource_type.as_str(),
                entry.resource.as_str(),
                entry.client.as_str(),
                entry.project.as_deref(),
            ),
            ("create", "project", "team", "cli", Some("team"))
        );
        assert_eq!(entry.username, os_user());
    }
}
