//! `sluice user ...` and `sluice app ...`: accounts and app memberships, through the same
//! account service as the HTTP API (so the same rules and audit events apply), acting as
//! `cli`.

use std::io::BufRead;

use anyhow::Context;
use clap::Subcommand;
use sluice::auth::{ClientInfo, Role};
use sluice::config::Environment;
use sluice::instance;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from standard input (one line; an empty
    /// line creates the account without one: the user then sets it by password reset).
    Add {
        email: String,
        /// admin, developer or viewer.
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Comma-separated group names.
        #[arg(long, default_value = "")]
        groups: String,
    },
    /// List accounts.
    List,
    /// Change a role (the user's sessions end).
    SetRole { email: String, role: String },
    /// Replace a user's groups (comma-separated; the user's sessions end).
    SetGroups { email: String, groups: String },
    /// Disable an account: its sessions end and its API keys stop working.
    Disable { email: String },
    /// Enable a disabled account.
    Enable { email: String },
    /// Remove a user's MFA (lost device); an admin must enrol again at the next sign-in.
    ResetMfa { email: String },
    /// Lift a lockout (when no reset mail can be sent).
    Unlock { email: String },
    /// Set a user's password, read from standard input (one line), when no reset mail can
    /// be sent. The user's sessions end and pending reset links stop working.
    SetPassword { email: String },
    /// Delete an account with its sessions, API keys and memberships (the audit log keeps
    /// its events). The last enabled admin cannot be deleted.
    Delete { email: String },
}

#[derive(Subcommand)]
pub enum AppCommand {
    /// List the members of an app.
    Members { app: String },
    /// Add a user to an app's members (again: sets or clears --editor).
    AddMember {
        app: String,
        email: String,
        /// Let the member (a developer) edit the app's settings and queries through the
        /// catalog API.
        #[arg(long)]
        editor: bool,
    },
    /// Remove a user from an app's members.
    RemoveMember { app: String, email: String },
}

fn parse_role(role: &str) -> anyhow::Result<Role> {
    Role::parse(role)
        .with_context(|| format!("unknown role `{role}`: expected admin, developer or viewer"))
}

fn parse_groups(groups: &str) -> Vec<String> {
    groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

const CLI: &str = "cli";

/// One line of standard input without its line ending (a password: never echoed or logged).
fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub async fn user(env: &Environment, command: UserCommand) -> anyhow::Result<()> {
    let service = instance::account_service(&env.config()?).await?;
    let client = ClientInfo::default();
    let done = match command {
        UserCommand::Add {
            email,
            role,
            name,
            groups,
        } => {
            let role = parse_role(&role)?;
            let password = read_password_line()?;
            let password = (!password.is_empty()).then_some(password);
            service
                .create_user(&email, &name, role, parse_groups(&groups), password, CLI)
                .await?
        }
        UserCommand::List => {
            for user in service.list_users().await? {
                println!(
                    "{}\t{}\t{}\tmfa={}\t{}",
                    user.id,
                    user.email,
                    user.role,
                    user.mfa_enabled,
                    if user.disabled { "disabled" } else { "active" }
                );
            }
            return Ok(());
        }
        UserCommand::SetRole { email, role } => {
            let target = service.user_by_email(&email).await?;
            service
                .set_role(&target.id, parse_role(&role)?, CLI, false, &client)
                .await?
        }
        UserCommand::SetGroups { email, groups } => {
            let target = service.user_by_email(&email).await?;
            service
                .set_groups(&target.id, parse_groups(&groups), CLI, &client)
                .await?
        }
        UserCommand::Disable { email } => {
            let target = service.user_by_email(&email).await?;
            service.set_disabled(&target.id, true, CLI, &client).await?
        }
        UserCommand::Enable { email } => {
            let target = service.user_by_email(&email).await?;
            service
                .set_disabled(&target.id, false, CLI, &client)
                .await?
        }
        UserCommand::ResetMfa { email } => {
            let target = service.user_by_email(&email).await?;
            service.reset_mfa(&target.id, CLI, &client).await?
        }
        UserCommand::Unlock { email } => {
            let target = service.user_by_email(&email).await?;
            service.unlock(&target.id, CLI, &client).await?
        }
        UserCommand::SetPassword { email } => {
            let target = service.user_by_email(&email).await?;
            let password = read_password_line()?;
            if password.is_empty() {
                anyhow::bail!("no password on standard input");
            }
            service
                .set_password(&target.id, password, CLI, &client)
                .await?
        }
        UserCommand::Delete { email } => {
            let target = service.user_by_email(&email).await?;
            let deleted = service.delete_user(&target.id, CLI, &client).await?;
            println!("deleted {} {}", deleted.id, deleted.email);
            return Ok(());
        }
    };
    println!(
        "{} {} role={} groups={} {}",
        done.id,
        done.email,
        done.role,
        done.groups.join(","),
        if done.disabled { "disabled" } else { "active" }
    );
    Ok(())
}

pub async fn app(env: &Environment, command: AppCommand) -> anyhow::Result<()> {
    let service = instance::account_service(&env.config()?).await?;
    let client = ClientInfo::default();
    match command {
        AppCommand::Members { app } => {
            for member in service.member_list(&app).await? {
                let user = service.user_by_id(&member.user_id).await?;
                let editor = if member.editor { "\teditor" } else { "" };
                println!("{}\t{}{editor}", user.id, user.email);
            }
        }
        AppCommand::AddMember { app, email, editor } => {
            let user = service.user_by_email(&email).await?;
            service
                .add_member(&app, &user.id, editor, CLI, &client)
                .await?;
            let what = if editor { "an editor" } else { "a member" };
            println!("{} is {what} of {app}", user.email);
        }
        AppCommand::RemoveMember { app, email } => {
            let user = service.user_by_email(&email).await?;
            service.remove_member(&app, &user.id, CLI, &client).await?;
            println!("{} is no longer a member of {app}", user.email);
        }
    }
    Ok(())
}
