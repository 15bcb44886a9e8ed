//! What the commands do, kept out of `main.rs` so it can be tested and reused.

use crate::config::Config;
use crate::dev_ims::{DevIms, TokenSpec, world};
use crate::domain::{OrgId, TenantId};
use crate::startup::{Application, open_store};
use crate::store::{DbOptions, Store, StoreError};

/// The demo tenant `start-dev` registers.
pub const DEMO_TENANT: &str = "acme-prod";

/// `serve`: the production service.
pub async fn serve(config: Config) -> Result<(), String> {
    let listen = config.listen;
    let app = Application::build(config).await.map_err(|e| e.to_string())?;
    tracing::info!(%listen, port = app.port(), "cc-connection serving");
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

/// `start-dev`: SQLite, the development IMS, a demo tenant, tokens printed.
pub async fn start_dev(mut config: Config) -> Result<(), String> {
    std::fs::create_dir_all("data").map_err(|e| format!("could not create ./data: {e}"))?;
    // The development IMS lives as long as this process; production never starts one.
    let dev_ims = match &config.ims_url {
        Some(_) => None,
        None => {
            let ims = DevIms::start("127.0.0.1:0")
                .await
                .map_err(|e| format!("development IMS: {e}"))?;
            config.ims_url = Some(ims.url());
            config.ims_cert_url = Some(ims.cert_base_url());
            Some(ims)
        }
    };
    let store = open_store(&config).await.map_err(|e| e.to_string())?;
    let tenant = TenantId::parse(DEMO_TENANT).map_err(|e| e.to_string())?;
    let home = OrgId::parse(world::ACME_HOME_ORG).map_err(|e| e.to_string())?;
    match store
        .add_tenant(&tenant, &home, &[world::ACME_ADMIN_GROUP.to_owned()])
        .await
    {
        Ok(_) | Err(StoreError::TenantExists) => {}
        Err(e) => return Err(format!("could not register the demo tenant: {e}")),
    }
    let admin_scope = config.admin_scope.clone();
    let read_scope = config.read_scope.clone();
    let app = Application::build_with_store(config, store)
        .await
        .map_err(|e| e.to_string())?;
    let base = format!("http://127.0.0.1:{}", app.port());
    if let Some(ims) = &dev_ims {
        print_dev_banner(ims, &base, &admin_scope, &read_scope);
    }
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

fn print_dev_banner(ims: &DevIms, base: &str, admin_scope: &str, read_scope: &str) {
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
         Try:\n\
         curl -s -X PUT -H \"Authorization: Bearer {admin}\" -H 'Content-Type: application/json' \
         -d '{{\"org_id\":\"{creative}\"}}' {base}/tenants/{t}/creative-cloud-connection\n\
         curl -s -H \"Authorization: Bearer {integration}\" {base}/tenants/{t}/creative-cloud-connection\n",
        ims_url = ims.url(),
        home = world::ACME_HOME_ORG,
        admin_group = world::ACME_ADMIN_GROUP,
        creative = world::ACME_CREATIVE_ORG,
        integ = world::INTEGRATION_CLIENT,
    );
}

fn database_url() -> Result<String, String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| "DATABASE_URL is required (see README, Configuration)".to_owned())
}

async fn open(migrate: bool) -> Result<Store, String> {
    let store = Store::connect(
        &database_url()?,
        &DbOptions {
            // Migrations need two (a lock and the DDL) and may run long.
            max_connections: 2,
            connect_timeout_secs: 5,
            statement_timeout_ms: 0,
            ..DbOptions::default()
        },
    )
    .await
    .map_err(|e| format!("database: {}", crate::error::error_chain(&e)))?;
    if migrate {
        store
            .migrate()
            .await
            .map_err(|e| format!("migrate: {}", crate::error::error_chain(&e)))?;
    }
    Ok(store)
}

/// `migrate`: applies pending migrations.
pub async fn migrate() -> Result<(), String> {
    open(true).await?;
    println!("migrations applied");
    Ok(())
}

/// `tenant add`.
pub async fn tenant_add(tenant: &TenantId, org: &OrgId, groups: &[String]) -> Result<(), String> {
    let store = open(true).await?;
    match store.add_tenant(tenant, org, groups).await {
        Ok(t) => {
            println!(
                "added {} (home org {}, admin groups {})",
                t.tenant_id,
                t.home_org,
                t.admin_groups.join(",")
            );
            Ok(())
        }
        Err(StoreError::TenantExists) => Err(format!("tenant {tenant} is already registered")),
        Err(e) => Err(crate::error::error_chain(&e)),
    }
}

/// `tenant list`.
pub async fn tenant_list() -> Result<(), String> {
    let store = open(true).await?;
    let tenants = store
        .list_tenants()
        .await
        .map_err(|e| crate::error::error_chain(&e))?;
    println!("{:<40} {:<36} ADMIN GROUPS", "TENANT", "HOME ORG");
    for t in tenants {
        println!(
            "{:<40} {:<36} {}",
            t.tenant_id,
            t.home_org,
            t.admin_groups.join(",")
        );
    }
    Ok(())
}
