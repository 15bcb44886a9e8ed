//! Builds the application from a `Config`: the store, IMS client, key cache and HTTP server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{KeyStore, TokenVerifier};
use crate::config::Config;
use crate::ims::ImsClient;
use crate::routes;
use crate::state::AppState;
use crate::store::{DbOptions, Store};
use crate::{openapi, telemetry};

/// A failure to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration lacks something the application needs.
    #[error("{0}")]
    Config(String),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] crate::store::StoreError),
    /// The listener could not be bound.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the store of `config` (and migrates it when `config.migrate`).
pub async fn open_store(config: &Config) -> Result<Store, StartError> {
    let url = config
        .database_url
        .as_deref()
        .ok_or_else(|| StartError::Config("DATABASE_URL is required".into()))?;
    let options = DbOptions {
        max_connections: config.db_max_connections,
        connect_timeout_secs: config.db_connect_timeout_ms.div_ceil(1000).max(1),
        statement_timeout_ms: config.db_statement_timeout_ms,
        read_batch_size: config.db_read_batch_size,
        read_batches_in_flight: config.db_read_batches_in_flight,
    };
    // An in-memory SQLite database lives in its pool: it is migrated there or not at all.
    let in_memory = url.starts_with("sqlite:") && (url.contains(":memory:") || url.contains("mode=memory"));
    if in_memory {
        let store = Store::connect(url, &options).await?;
        if config.migrate {
            store.migrate().await?;
        }
        return Ok(store);
    }
    if config.migrate {
        // Migrations hold a lock on one connection while they run on another, and DDL may
        // outlast the request statement timeout: they get a pool of their own, whatever the
        // serving pool's size.
        let migrator = Store::connect(
            url,
            &DbOptions {
                max_connections: 2,
                statement_timeout_ms: 0,
                ..options
            },
        )
        .await?;
        let migrated = migrator.migrate().await;
        migrator.close().await;
        migrated?;
    }
    Ok(Store::connect(url, &options).await?)
}

/// A built, bound, not yet running application.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
}

impl Application {
    /// Opens the store, binds `config.listen` (port 0 picks a free one) and builds the server.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let store = open_store(&config).await?;
        Self::build_with_store(config, store).await
    }

    /// Like [`Application::build`] with an already opened store.
    pub async fn build_with_store(config: Config, store: Store) -> Result<Self, StartError> {
        let ims_url = config
            .ims_url
            .clone()
            .ok_or_else(|| StartError::Config("CCC_IMS_URL is required".into()))?;
        let ims = ImsClient::new(&ims_url, config.ims_timeout())
            .map_err(|e| StartError::Config(format!("IMS client: {e}")))?;
        let keys = Arc::new(KeyStore::new(ims.clone(), config.ims_cert_url.clone()));
        let verifier = Arc::new(TokenVerifier::new(
            keys.clone(),
            &config.client_ids,
            config.ims_region.clone(),
        ));
        // Keys load in the background: the service starts (and /readyz says not ready) even while
        // IMS is unreachable, and refreshes so that keys IMS withdraws stop verifying.
        tokio::spawn(refresh_keys(Arc::downgrade(&keys)));
        let state = AppState {
            config: Arc::new(config),
            store,
            ims,
            verifier,
        };
        let listener = TcpListener::bind(state.config.listen)?;
        let port = listener.local_addr()?.port();
        let server = serve(listener, state.clone())?;
        Ok(Self { port, server, state })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (for tests and tools).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs until the server is stopped (SIGTERM/SIGINT stop it gracefully).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

async fn refresh_keys(keys: std::sync::Weak<KeyStore>) {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        let Some(store) = keys.upgrade() else { return };
        let next = match store.refresh().await {
            Ok(_) => crate::auth::keys::BACKGROUND_REFRESH,
            Err(e) => {
                tracing::warn!(error = %e, "could not load IMS signing keys; retrying");
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
                delay
            }
        };
        drop(store);
        tokio::time::sleep(next).await;
    }
}

fn serve(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let (app, api) = App::new()
            .into_utoipa_app()
            .openapi(openapi::base())
            .app_data(data.clone())
            .app_data(routes::json_config())
            .app_data(routes::query_config())
            .configure(routes::configure)
            .split_for_parts();
        app.service(SwaggerUi::new("/swagger-ui/{_:.*}").url("/openapi.json", openapi::finish(api)))
            .default_service(web::to(routes::fallback))
            .wrap(from_fn(telemetry::request_context))
    })
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
}
