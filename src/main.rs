//! The `cc-connection` command line: a thin layer over the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cc_connection::config::{Config, Mode};
use cc_connection::domain::{OrgId, TenantId};
use cc_connection::{cli, telemetry};

/// cc-connection: which Creative Cloud org each AEM Assets tenant is connected to.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs locally on SQLite under ./data/ with the built-in development IMS and a demo tenant,
    /// and prints ready-to-use tokens.
    StartDev,
    /// Runs the service (configuration from the environment; see README).
    Serve,
    /// Applies pending database migrations and exits (DATABASE_URL).
    Migrate,
    /// Prints the OpenAPI document.
    Openapi,
    /// Manages the tenant registry (DATABASE_URL).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
        /// Who the history and the change feed name for this change (`cli:<name>`); default
        /// `operator`. Never the machine's login: the feed reaches every integration.
        #[arg(long = "by", global = true, value_name = "NAME")]
        by: Option<String>,
    },
    /// Manages webhook endpoints (DATABASE_URL).
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Lists every integration's endpoints.
    List {
        /// Prints a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows an endpoint: its URL, status, position, attempts and lease.
    Show {
        /// The endpoint id (`ep_...`).
        id: String,
        /// Prints JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stops delivery to an endpoint until it is enabled (its position is kept).
    Disable {
        /// The endpoint id.
        id: String,
    },
    /// Resumes delivery to an endpoint after its position.
    Enable {
        /// The endpoint id.
        id: String,
    },
    /// Delivers the changes after a position again, in order.
    Replay {
        /// The endpoint id.
        id: String,
        /// The feed position to go on after.
        #[arg(long)]
        after: i64,
    },
    /// Re-encrypts every secret under CCC_WEBHOOK_KEY (those under a key of
    /// CCC_WEBHOOK_PREVIOUS_KEYS): the key rotation's last step.
    Reencrypt,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Registers a tenant: its home IMS org and the groups of that org that administer it.
    Add {
        /// The tenant id.
        tenant_id: TenantId,
        /// The tenant's home IMS org id (`<24 hex>@AdobeOrg`).
        #[arg(long = "ims-org")]
        ims_org: OrgId,
        /// An IMS group ident (in the home org) whose members administer the tenant; repeatable.
        #[arg(long = "admin-group", required = true)]
        admin_groups: Vec<String>,
    },
    /// Lists registered tenants.
    List {
        /// Prints a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows a tenant: home org, admin groups, the active connection and the newest history.
    Show {
        /// The tenant id.
        tenant_id: TenantId,
        /// How many history entries to show, newest first.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
        history: u64,
        /// Prints JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replaces the tenant's administrator groups; the next request on every replica uses them.
    SetAdminGroups {
        /// The tenant id.
        tenant_id: TenantId,
        /// An IMS group ident (in the home org) whose members administer the tenant; repeatable.
        #[arg(long = "admin-group", required = true)]
        admin_groups: Vec<String>,
    },
    /// Removes a tenant: ends its active connection (`tenant-removed`, by `cli:operator`, kept in the
    /// history); the API then answers 404 unknown-tenant for it. `add` registers it again.
    Remove {
        /// The tenant id.
        tenant_id: TenantId,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("could not start the runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::StartDev => {
                let config = cli::load_dev_config()?;
                telemetry::init(config.log_format, config.trace_incoming);
                cli::start_dev(config).await
            }
            Command::Serve => {
                let config = Config::load(Mode::Serve).map_err(|e| e.to_string())?;
                telemetry::init(config.log_format, config.trace_incoming);
                cli::serve(config).await
            }
            Command::Migrate => cli::migrate().await,
            Command::Openapi => {
                println!("{}", cc_connection::openapi::document_json());
                Ok(())
            }
            Command::Tenant { command, by } => match command {
                TenantCommand::Add {
                    tenant_id,
                    ims_org,
                    admin_groups,
                } => cli::tenant_add(&tenant_id, &ims_org, &admin_groups, by.as_deref()).await,
                TenantCommand::List { json } => cli::tenant_list(json).await,
                TenantCommand::Show {
                    tenant_id,
                    history,
                    json,
                } => cli::tenant_show(&tenant_id, history, json).await,
                TenantCommand::SetAdminGroups {
                    tenant_id,
                    admin_groups,
                } => cli::tenant_set_admin_groups(&tenant_id, &admin_groups, by.as_deref()).await,
                TenantCommand::Remove { tenant_id } => cli::tenant_remove(&tenant_id, by.as_deref()).await,
            },
            Command::Webhook { command } => cli::webhook(command.into()).await,
        }
    });
    // The spans still buffered, exported before exit (the runtime's workers still run).
    telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

impl From<WebhookCommand> for cli::WebhookVerb {
    fn from(c: WebhookCommand) -> Self {
        match c {
            WebhookCommand::List { json } => Self::List { json },
            WebhookCommand::Show { id, json } => Self::Show { id, json },
            WebhookCommand::Disable { id } => Self::Disable { id },
            WebhookCommand::Enable { id } => Self::Enable { id },
            WebhookCommand::Replay { id, after } => Self::Replay { id, after },
            WebhookCommand::Reencrypt => Self::Reencrypt,
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
