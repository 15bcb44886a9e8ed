//! What the commands do, kept out of `main.rs` so it can be tested and reused.

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use crate::config::Config;
#[cfg(feature = "dev-ims")]
use crate::config::Mode;
#[cfg(feature = "dev-ims")]
use crate::dev_ims::{DevIms, TokenSpec, world};
use crate::domain::{Actor, AdminGroups, Condition, OrgId, Revision, TenantId};
use crate::representation::{Connection, HistoryEntry};
use crate::startup::Application;
use crate::store::{DbOptions, EntryCondition, RegistryEntry, Store, StoreError, TenantWrite};

/// The demo tenant `start-dev` registers.
pub const DEMO_TENANT: &str = "acme-prod";

/// `serve`: the production service.
pub async fn serve(config: Config) -> Result<(), String> {
    let listen = config.listen;
    let app = Application::build(config).await.map_err(|e| e.to_string())?;
    tracing::info!(%listen, port = app.port(), ops_port = app.ops_port(), "cc-connection serving");
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

/// What `start-dev` says, in one line, in a binary built without the development IMS.
pub const NO_DEV_IMS: &str =
    "start-dev needs the development IMS: this binary was built without the `dev-ims` feature";

/// `start-dev`'s defaults: the development mode's, with the development IMS's clients and region
/// (its URL is only known once it runs).
#[cfg(feature = "dev-ims")]
pub fn dev_defaults() -> Config {
    Config {
        client_ids: vec![
            world::UI_CLIENT.to_owned(),
            world::INTEGRATION_CLIENT.to_owned(),
            world::LIBRARIES_CLIENT.to_owned(),
            world::PROVISIONING_CLIENT.to_owned(),
        ],
        integration_client_ids: vec![
            world::INTEGRATION_CLIENT.to_owned(),
            world::LIBRARIES_CLIENT.to_owned(),
        ],
        provisioning_client_ids: vec![world::PROVISIONING_CLIENT.to_owned()],
        ims_region: Some(world::REGION.to_owned()),
        ims_cert_name_prefix: Some(crate::dev_ims::CERT_NAME_PREFIX.to_owned()),
        // Receivers on this machine, over http: what a quick start delivers to.
        webhook_allow_insecure: true,
        webhook_allow_private: true,
        ..Config::defaults(Mode::Dev)
    }
}

/// `start-dev`'s configuration: the environment over [`dev_defaults`].
#[cfg(feature = "dev-ims")]
pub fn load_dev_config() -> Result<Config, String> {
    Config::load_over(Mode::Dev, dev_defaults()).map_err(|e| e.to_string())
}

/// Without the development IMS there is no `start-dev`.
#[cfg(not(feature = "dev-ims"))]
pub fn load_dev_config() -> Result<Config, String> {
    Err(NO_DEV_IMS.to_owned())
}

/// `start-dev`: SQLite, the development IMS, a demo tenant, tokens printed.
#[cfg(feature = "dev-ims")]
pub async fn start_dev(mut config: Config) -> Result<(), String> {
    std::fs::create_dir_all("data").map_err(|e| format!("could not create ./data: {e}"))?;
    // The development IMS lives as long as this process; production never starts one.
    let dev_ims = match &config.ims_url {
        crate::config::ImsEndpoint::Url(_) => None,
        crate::config::ImsEndpoint::Dev => {
            let ims = DevIms::start("127.0.0.1:0")
                .await
                .map_err(|e| format!("development IMS: {e}"))?;
            let url = |raw: String| url::Url::parse(&raw).map_err(|e| format!("development IMS: {e}"));
            config.ims_url = crate::config::ImsEndpoint::Url(url(ims.url())?);
            config.ims_cert_url = Some(url(ims.cert_base_url())?);
            Some(ims)
        }
    };
    if config.webhook_key.is_none() {
        config.webhook_key = Some(dev_webhook_key()?);
    }
    let store = crate::startup::open_store(&config)
        .await
        .map_err(|e| e.to_string())?;
    let tenant = TenantId::parse(DEMO_TENANT).map_err(|e| e.to_string())?;
    let home = OrgId::parse(world::ACME_HOME_ORG).map_err(|e| e.to_string())?;
    let demo = TenantWrite {
        tenant_id: &tenant,
        home_org: Some(&home),
        admin_groups: &[world::ACME_ADMIN_GROUP.to_owned()],
        condition: EntryCondition::Absent,
        by: &Actor::operator("start-dev"),
        at: chrono::Utc::now(),
    };
    match store.put_tenant(&demo).await {
        Ok(_) | Err(StoreError::EntryPreconditionFailed(_)) => {}
        Err(e) => return Err(format!("could not register the demo tenant: {e}")),
    }
    let scopes = DevScopes {
        admin: config.admin_scope.clone(),
        read: config.read_scope.clone(),
        provision: config.provisioning_scope.clone(),
    };
    let app = Application::build_with_store(config, store)
        .await
        .map_err(|e| e.to_string())?;
    let base = format!("http://127.0.0.1:{}", app.port());
    if let Some(ims) = &dev_ims {
        print_dev_banner(ims, &base, &scopes);
    }
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

/// Where `start-dev` keeps the key of its webhook secrets, beside its database: made once, so the
/// endpoints of one run still sign in the next.
#[cfg(feature = "dev-ims")]
const DEV_WEBHOOK_KEY_FILE: &str = "data/webhook-key";

#[cfg(feature = "dev-ims")]
fn dev_webhook_key() -> Result<crate::webhook::WebhookKey, String> {
    use crate::webhook::WebhookKey;
    if let Ok(text) = std::fs::read_to_string(DEV_WEBHOOK_KEY_FILE) {
        return WebhookKey::parse(&text).map_err(|e| format!("{DEV_WEBHOOK_KEY_FILE}: {e}"));
    }
    let key = WebhookKey::generate();
    std::fs::write(DEV_WEBHOOK_KEY_FILE, key.to_base64())
        .map_err(|e| format!("could not write {DEV_WEBHOOK_KEY_FILE}: {e}"))?;
    Ok(key)
}

/// Without the development IMS there is no `start-dev`.
#[cfg(not(feature = "dev-ims"))]
pub async fn start_dev(_config: Config) -> Result<(), String> {
    Err(NO_DEV_IMS.to_owned())
}

/// The scopes `start-dev`'s tokens carry (as configured).
#[cfg(feature = "dev-ims")]
struct DevScopes {
    admin: String,
    read: String,
    provision: String,
}

#[cfg(feature = "dev-ims")]
fn print_dev_banner(ims: &DevIms, base: &str, scopes: &DevScopes) {
    let (admin_scope, read_scope) = (scopes.admin.as_str(), scopes.read.as_str());
    let mut user_scopes: Vec<&str> = world::USER_SCOPES.to_vec();
    let member = ims.mint(&TokenSpec::user(
        world::BOB_MEMBER,
        world::UI_CLIENT,
        &user_scopes,
    ));
    user_scopes.push(admin_scope);
    let admin = ims.mint(&TokenSpec::user(
        world::ALICE_FEDERATED,
        world::UI_CLIENT,
        &user_scopes,
    ));
    let personal = ims.mint(&TokenSpec::user(
        world::ALICE_PERSONAL,
        world::UI_CLIENT,
        &user_scopes,
    ));
    let integration = ims.mint(&TokenSpec::service(world::INTEGRATION_CLIENT, &[read_scope]));
    let provisioning = ims.mint(&TokenSpec::service(
        world::PROVISIONING_CLIENT,
        &[scopes.provision.as_str()],
    ));
    let t = DEMO_TENANT;
    println!(
        "\ncc-connection (development) on {base}\n\
         Swagger UI: {base}/swagger-ui/   development IMS: {ims_url}\n\
         Demo tenant {t}: home org {home} ({admin_group} administers it).\n\
         Tokens (valid 24 h, for this run only):\n\n\
         ADMIN_TOKEN={admin}\n  # alice, federated ID, administrator, Creative Cloud in {creative}\n\n\
         PERSONAL_TOKEN={personal}\n  # alice's personal Adobe ID (same email): administrator, no Creative Cloud entitlement\n\n\
         MEMBER_TOKEN={member}\n  # bob, member of the tenant's org, not an administrator\n\n\
         INTEGRATION_TOKEN={integration}\n  # service token of {integ} with {read_scope}\n\n\
         PROVISIONING_TOKEN={provisioning}\n  # service token of {prov} with {provision_scope}: the tenant registry (/tenants)\n\n\
         Try:\n\
         curl -s -X PUT -H \"Authorization: Bearer {admin}\" -H 'Content-Type: application/json' \
         -d '{{\"org_id\":\"{creative}\"}}' {base}/tenants/{t}/creative-cloud-connection\n\
         curl -s -H \"Authorization: Bearer {integration}\" {base}/tenants/{t}/creative-cloud-connection\n\
         # follow every tenant's changes (Server-Sent Events):\n\
         curl -sN -H \"Authorization: Bearer {integration}\" {base}/creative-cloud-connections/changes/stream\n\
         # or have them POSTed to a receiver of yours (README, \"Webhooks\"), e.g. on port 9000:\n\
         curl -s -X POST -H \"Authorization: Bearer {integration}\" -H 'Content-Type: application/json' \
         -d '{{\"url\":\"http://127.0.0.1:9000/hooks\"}}' {base}/webhook-endpoints\n\
         # register a tenant as the provisioning system does:\n\
         curl -s -X PUT -H \"Authorization: Bearer {provisioning}\" -H 'Content-Type: application/json' \
         -d '{{\"ims_org\":\"{home}\",\"admin_groups\":[\"{admin_group}\"]}}' {base}/tenants/acme-stage\n",
        ims_url = ims.url(),
        home = world::ACME_HOME_ORG,
        admin_group = world::ACME_ADMIN_GROUP,
        creative = world::ACME_CREATIVE_ORG,
        integ = world::INTEGRATION_CLIENT,
        prov = world::PROVISIONING_CLIENT,
        provision_scope = scopes.provision,
    );
}

/// Prints one line of a command's output as the terminal will show it: every character a terminal
/// could act on (escape sequences start with a control character) or that reorders the display is
/// shown as U+FFFD. Stored text (org names from IMS, written before they were cleaned on the way in)
/// and operator input never reach the terminal raw.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", terminal_safe(&format!($($arg)*)))
    };
}

/// `line` with each unsafe character ([`crate::ims::is_unsafe_char`]) replaced by U+FFFD.
pub fn terminal_safe(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(crate::ims::is_unsafe_char) {
        return std::borrow::Cow::Borrowed(line);
    }
    line.chars()
        .map(|c| {
            if crate::ims::is_unsafe_char(c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect::<String>()
        .into()
}

fn database_url() -> Result<String, String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| "DATABASE_URL is required (see README, Configuration)".to_owned())
}

/// A bound in milliseconds from the environment (`name`), else `default`; at least 1.
fn bound_ms(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms >= 1)
            .ok_or_else(|| format!("{name} must be a whole number of milliseconds, at least 1")),
    }
}

/// Opens the database without touching its schema, every statement (or, migrating, the whole
/// migration) bounded by `statement_timeout_ms` on the server and on our side.
async fn open(statement_timeout_ms: u64) -> Result<Store, String> {
    Store::connect(
        &database_url()?,
        &DbOptions {
            // Migrations need two (a lock and the DDL).
            max_connections: 2,
            connect_timeout: std::time::Duration::from_secs(5),
            statement_timeout_ms,
            ..DbOptions::default()
        },
    )
    .await
    .map_err(|e| format!("database: {}", crate::error::error_chain(&e)))
}

/// A `tenant` command never creates a database: on a SQLite file that does not exist it says so in
/// one line (exit code 1) instead of opening it, which would create it empty. Only `migrate` (and
/// `serve`, `start-dev`) create one.
fn refuse_missing_sqlite_file(url: &str) -> Result<(), String> {
    use std::str::FromStr;
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(());
    }
    let options = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| format!("DATABASE_URL: {e}"))?;
    let path = options.get_filename();
    if path.exists() {
        return Ok(());
    }
    Err(format!(
        "database file {} does not exist: nothing was created (run `cc-connection migrate` to create it)",
        terminal_safe(&path.display().to_string())
    ))
}

/// Opens the database for a `tenant` command, which never changes the schema: one whose schema is
/// older than this binary's is refused (reading it could misread it, writing it could lose what
/// the newer columns mean).
pub(crate) async fn open_current() -> Result<Store, String> {
    refuse_missing_sqlite_file(&database_url()?)?;
    let bound = bound_ms(
        "CCC_DB_STATEMENT_TIMEOUT_MS",
        crate::config::DEFAULT_DB_STATEMENT_TIMEOUT_MS,
    )?;
    let store = open(bound).await?;
    let pending = store
        .pending_migrations()
        .await
        .map_err(|e| format!("database: {}", crate::error::error_chain(&e)))?;
    if !pending.is_empty() {
        return Err(format!(
            "the database schema is older than this binary ({} migration(s) pending, first {}): run `cc-connection migrate` first",
            pending.len(),
            pending[0]
        ));
    }
    Ok(store)
}

fn db_error(e: &StoreError) -> String {
    format!("database: {}", crate::error::error_chain(e))
}

fn not_registered(tenant: &TenantId) -> String {
    format!("tenant {tenant} is not registered")
}

/// The `--admin-group` list, checked as the API checks `admin_groups` (an empty ident is a quoting
/// mistake: IMS never has one).
fn check_groups(groups: &[String]) -> Result<AdminGroups, String> {
    AdminGroups::parse(groups.to_vec()).map_err(|e| format!("--admin-group: {}", e.reason))
}

/// Who a command's change is made by, as the history and the change feed name it:
/// `cli:<name>` with the name the operator chose (`--by`), else `cli:operator`. Never the
/// machine's login: the feed reaches every integration.
pub fn operator(by: Option<&str>) -> Actor {
    Actor::operator(by.filter(|b| !b.trim().is_empty()).unwrap_or(DEFAULT_OPERATOR))
}

/// The name of the operator when `--by` is not given.
pub const DEFAULT_OPERATOR: &str = "operator";

/// `migrate`: applies pending migrations.
pub async fn migrate() -> Result<(), String> {
    let bound = bound_ms(
        "CCC_DB_MIGRATION_TIMEOUT_MS",
        crate::config::DEFAULT_DB_MIGRATION_TIMEOUT_MS,
    )?;
    let store = open(bound).await?;
    store
        .migrate()
        .await
        .map_err(|e| format!("migrate: {}", crate::error::error_chain(&e)))?;
    println!("migrations applied");
    Ok(())
}

/// `tenant add`: registers a tenant that is not registered (also one removed before), as
/// `PUT /tenants/{id}` with `If-None-Match: *` does.
pub async fn tenant_add(
    tenant: &TenantId,
    org: &OrgId,
    groups: &[String],
    by: Option<&str>,
) -> Result<(), String> {
    let groups = check_groups(groups)?;
    let store = open_current().await?;
    let write = TenantWrite {
        tenant_id: tenant,
        home_org: Some(org),
        admin_groups: groups.as_slice(),
        condition: EntryCondition::Absent,
        by: &operator(by),
        at: chrono::Utc::now(),
    };
    match store.put_tenant(&write).await {
        Ok(outcome) => {
            let t = &outcome.entry().tenant;
            say!(
                "added {} (home org {}, admin groups {})",
                t.tenant_id,
                t.home_org,
                t.admin_groups.join(",")
            );
            Ok(())
        }
        Err(StoreError::EntryPreconditionFailed(_)) => Err(format!("tenant {tenant} is already registered")),
        Err(e) => Err(db_error(&e)),
    }
}

/// One registered tenant, as `tenant list --json` and `tenant show --json` print it.
#[derive(Debug, Serialize, Deserialize)]
pub struct TenantJson {
    /// The tenant id.
    pub tenant_id: TenantId,
    /// Its home IMS org.
    pub home_org: OrgId,
    /// The IMS group idents (in the home org) whose members administer it.
    pub admin_groups: Vec<String>,
    /// The tenant's revision (bumped by every change of the feed: switch, disconnect, removal,
    /// registration again).
    pub revision: Revision,
    /// The registry entry's version (the provisioning API's `ETag`).
    pub version: Revision,
    /// When the tenant was (last) registered.
    pub registered_at: chrono::DateTime<chrono::Utc>,
    /// When its registry entry last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<&RegistryEntry> for TenantJson {
    fn from(e: &RegistryEntry) -> Self {
        let t = &e.tenant;
        Self {
            tenant_id: t.tenant_id.clone(),
            home_org: t.home_org.clone(),
            admin_groups: t.admin_groups.clone(),
            revision: t.revision,
            version: e.version,
            registered_at: e.registered_at,
            updated_at: e.updated_at,
        }
    }
}

/// What `tenant show --json` prints: the registry entry, the active connection (the API's
/// `Connection`, or null) and the newest history entries (the API's `HistoryEntry`).
#[derive(Debug, Serialize, Deserialize)]
pub struct TenantShowJson {
    /// The registry entry.
    #[serde(flatten)]
    pub tenant: TenantJson,
    /// The active connection, if any.
    pub connection: Option<Connection>,
    /// The newest history entries, newest first.
    pub history: Vec<HistoryEntry>,
}

/// `tenant list`: a table, or a JSON array with `json`.
pub async fn tenant_list(json: bool) -> Result<(), String> {
    let store = open_current().await?;
    // Page by page, as `GET /tenants` reads it.
    let mut tenants: Vec<RegistryEntry> = Vec::new();
    loop {
        let after = tenants.last().map(|e| e.tenant.tenant_id.clone());
        let page = store
            .registry_page(after.as_ref(), 1_000)
            .await
            .map_err(|e| db_error(&e))?;
        let last = page.len() < 1_000;
        tenants.extend(page.into_iter().map(|(entry, _)| entry));
        if last {
            break;
        }
    }
    if json {
        let all: Vec<TenantJson> = tenants.iter().map(TenantJson::from).collect();
        println!("{}", to_json(&all)?);
        return Ok(());
    }
    say!("{:<40} {:<36} ADMIN GROUPS", "TENANT", "HOME ORG");
    for t in tenants.iter().map(|e| &e.tenant) {
        say!(
            "{:<40} {:<36} {}",
            t.tenant_id,
            t.home_org,
            t.admin_groups.join(",")
        );
    }
    Ok(())
}

/// JSON as printed: serde escapes C0 controls; DEL, C1 controls and bidirectional-text controls
/// (which a terminal may act on too) are escaped as well, so the text stays the same JSON.
fn to_json(value: &impl Serialize) -> Result<String, String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| format!("could not write JSON: {e}"))?;
    if !text.chars().any(crate::ims::is_unsafe_char) {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if crate::ims::is_unsafe_char(c) && c != '\n' {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// `tenant show`: the registry entry, the active connection and the newest `history` entries.
pub async fn tenant_show(tenant: &TenantId, history: u64, json: bool) -> Result<(), String> {
    let store = open_current().await?;
    let (entry, active) = store
        .registry_entry(tenant)
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(|| not_registered(tenant))?;
    let entries = match store.history(tenant, history, None).await {
        Ok(entries) => entries,
        // Removed between the two reads.
        Err(StoreError::UnknownTenant) => return Err(not_registered(tenant)),
        Err(e) => return Err(db_error(&e)),
    };
    let shown = TenantShowJson {
        tenant: TenantJson::from(&entry),
        connection: active.as_ref().map(Connection::from),
        history: entries.iter().map(HistoryEntry::from).collect(),
    };
    if json {
        println!("{}", to_json(&shown)?);
        return Ok(());
    }
    let t = &shown.tenant;
    say!("tenant        {}", t.tenant_id);
    say!("home org      {}", t.home_org);
    say!("admin groups  {}", t.admin_groups.join(", "));
    say!("revision      {}", t.revision);
    say!(
        "registered    {} (entry version {}, updated {})",
        t.registered_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        t.version,
        t.updated_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    match &shown.connection {
        Some(c) => say!(
            "connected to  {} ({}) by {} at {}, revision {}",
            c.org_id,
            c.org_name,
            c.connected_by,
            c.connected_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            c.revision
        ),
        None => say!("connected to  nothing"),
    }
    if shown.history.is_empty() {
        say!("history       none");
        return Ok(());
    }
    say!("history       newest first, at most {history}:");
    for e in &shown.history {
        let ended = match (&e.ended_by, e.ended_at, &e.end_reason) {
            (Some(by), Some(at), Some(reason)) => format!(
                "ended {} by {by} ({reason})",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            _ => "active".to_owned(),
        };
        say!(
            "  {:>6}  {} ({})  connected {} by {}; {ended}",
            e.revision,
            e.org_id,
            e.org_name,
            e.connected_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            e.connected_by
        );
    }
    Ok(())
}

/// `tenant set-admin-groups`: replaces the tenant's administrator groups, as `PUT /tenants/{id}`
/// with the registered org and `If-Match: *` does.
pub async fn tenant_set_admin_groups(
    tenant: &TenantId,
    groups: &[String],
    by: Option<&str>,
) -> Result<(), String> {
    let groups = check_groups(groups)?;
    let store = open_current().await?;
    let write = TenantWrite {
        tenant_id: tenant,
        home_org: None,
        admin_groups: groups.as_slice(),
        condition: EntryCondition::Present(Condition::Any),
        by: &operator(by),
        at: chrono::Utc::now(),
    };
    match store.put_tenant(&write).await.map(|o| o.entry().tenant.clone()) {
        Ok(t) => {
            say!(
                "admin groups of {} are now {}",
                t.tenant_id,
                t.admin_groups.join(",")
            );
            Ok(())
        }
        Err(StoreError::UnknownTenant | StoreError::EntryPreconditionFailed(_)) => {
            Err(not_registered(tenant))
        }
        Err(e) => Err(db_error(&e)),
    }
}

/// `tenant remove`: ends the active connection (`tenant-removed`, by the operator) and removes the
/// tenant from the registry; its history stays.
pub async fn tenant_remove(tenant: &TenantId, by: Option<&str>) -> Result<(), String> {
    let store = open_current().await?;
    let by = operator(by);
    match store
        .remove_tenant_if(tenant, &by, chrono::Utc::now(), None)
        .await
    {
        Ok(Some(ended)) => {
            say!(
                "removed {tenant}; its connection to {} (revision {}) ended by {by}",
                ended.org_id,
                ended.revision
            );
            Ok(())
        }
        Ok(None) => {
            say!("removed {tenant} (it had no connection)");
            Ok(())
        }
        Err(StoreError::UnknownTenant) => Err(not_registered(tenant)),
        Err(StoreError::ConcurrentSwitch) => {
            Err(format!("tenant {tenant} is being switched right now: try again"))
        }
        Err(e) => Err(db_error(&e)),
    }
}

/// A `webhook` command.
#[derive(Debug)]
pub enum WebhookVerb {
    /// `webhook list [--json]`.
    List {
        /// JSON instead of a table.
        json: bool,
    },
    /// `webhook show <id> [--json]`.
    Show {
        /// The endpoint.
        id: String,
        /// JSON instead of text.
        json: bool,
    },
    /// `webhook disable <id>`.
    Disable {
        /// The endpoint.
        id: String,
    },
    /// `webhook enable <id>`.
    Enable {
        /// The endpoint.
        id: String,
    },
    /// `webhook replay <id> --after <position>`.
    Replay {
        /// The endpoint.
        id: String,
        /// The position to go on after.
        after: i64,
    },
    /// `webhook reencrypt` (reads `CCC_WEBHOOK_KEY` and `CCC_WEBHOOK_PREVIOUS_KEYS`).
    Reencrypt,
}

/// `webhook ...`: see `webhook::cli`.
pub async fn webhook(verb: WebhookVerb) -> Result<(), String> {
    use crate::webhook::cli as w;
    let store = open_current().await?;
    match verb {
        WebhookVerb::List { json } => w::list(store, json).await,
        WebhookVerb::Show { id, json } => w::show(store, &id, json).await,
        WebhookVerb::Disable { id } => w::disable(store, &id).await,
        WebhookVerb::Enable { id } => w::enable(store, &id).await,
        WebhookVerb::Replay { id, after } => w::replay(store, &id, after).await,
        WebhookVerb::Reencrypt => {
            let key = std::env::var("CCC_WEBHOOK_KEY")
                .map_err(|_| "CCC_WEBHOOK_KEY is required (the key to encrypt under)".to_owned())?;
            let key = crate::webhook::WebhookKey::parse(&key).map_err(|e| format!("CCC_WEBHOOK_KEY: {e}"))?;
            let previous: Result<Vec<_>, String> = std::env::var("CCC_WEBHOOK_PREVIOUS_KEYS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| {
                    crate::webhook::WebhookKey::parse(k)
                        .map_err(|e| format!("CCC_WEBHOOK_PREVIOUS_KEYS: {e}"))
                })
                .collect();
            w::reencrypt(store, &crate::webhook::SecretBox::new(key, previous?)).await
        }
    }
}
