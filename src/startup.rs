//! Builds the application from a `Config`: the store, IMS client, key cache and HTTP server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{KeyStore, TokenVerifier};
use crate::config::{Config, ImsEndpoint};
use crate::feed::Hub;
use crate::ims::ImsClient;
use crate::metrics::Metrics;
use crate::ratelimit::ImsRateLimiter;
use crate::routes;
use crate::state::AppState;
use crate::store::{DbOptions, Store};
use crate::watch::{Feed, WatcherCaps, Watchers};
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
        connect_timeout: config.db_connect_timeout(),
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
        // serving pool's size, bounded in all by the migration timeout.
        let migrator = Store::connect(
            url,
            &DbOptions {
                max_connections: 2,
                statement_timeout_ms: config.db_migration_timeout_ms,
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
    /// The `CCC_OPS_LISTEN` listener's port and server, when set.
    ops: Option<(u16, Server)>,
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
        let ImsEndpoint::Url(ims_url) = &config.ims_url else {
            return Err(StartError::Config("CCC_IMS_URL is required".into()));
        };
        let metrics = Arc::new(Metrics::new());
        let ims = ImsClient::with_breaker(
            ims_url.as_str(),
            config.ims_timeout(),
            config.ims_breaker_failures,
            std::time::Duration::from_millis(config.ims_breaker_cooldown_ms),
            &metrics,
        )
        .map_err(|e| StartError::Config(format!("IMS client: {e}")))?;
        let keys = Arc::new(
            KeyStore::new(ims.clone(), config.ims_cert_url.as_ref().map(|u| u.to_string()))
                .with_cert_name_prefix(config.cert_name_prefix()),
        );
        let verifier = Arc::new(TokenVerifier::new(
            keys.clone(),
            &config.accepted_client_ids(),
            config.ims_region.clone(),
        ));
        // Keys load in the background: the service starts (and /readyz says not ready) even while
        // IMS is unreachable, and refreshes so that keys IMS withdraws stop verifying.
        tokio::spawn(refresh_keys(Arc::downgrade(&keys)));
        let ims_limiter = ImsRateLimiter::new(config.ims_rate_per_minute, config.ims_rate_burst);
        let watchers = Watchers::new(
            WatcherCaps {
                replica: config.max_watchers,
                caller: config.max_watchers_per_caller,
                tenant: config.max_watchers_per_tenant,
            },
            // SQLite's changes are told in process from the start; PostgreSQL's wait for the
            // listener (`watch::spawn_postgres_feed`).
            match store.connection().get_database_backend() {
                sea_orm::DbBackend::Postgres => Feed::AwaitingListener,
                _ => Feed::Live,
            },
            &metrics,
        );
        store.notify_commits_to(Arc::new(watchers.clone()));
        metrics
            .watchers_max
            .set(i64::try_from(config.max_watchers).unwrap_or(i64::MAX));
        if store.connection().get_database_backend() == sea_orm::DbBackend::Sqlite
            && let Some(url) = config.database_url.as_deref()
            // An in-memory database is this process's alone.
            && !(url.contains(":memory:") || url.contains("mode=memory"))
        {
            crate::watch::spawn_sqlite_feed(&watchers, url, config.db_connect_timeout())?;
        }
        if store.connection().get_database_backend() == sea_orm::DbBackend::Postgres
            && let Some(url) = config.database_url.as_deref()
        {
            crate::watch::spawn_postgres_feed(
                &watchers,
                store.connection(),
                url,
                crate::watch::ListenerBounds {
                    connect: config.db_connect_timeout(),
                    silence: std::time::Duration::from_millis(config.db_listener_timeout_ms),
                },
            )?;
        }
        let hub = Arc::new(Hub::new(
            store.clone(),
            watchers.clone(),
            config.feed_buffer,
            &metrics,
        ));
        let webhooks = crate::webhook::Webhooks::new(&config, &store, &watchers, &metrics);
        webhooks.start();
        let state = AppState {
            webhooks,
            config: Arc::new(config),
            store,
            watchers,
            hub,
            ims,
            verifier,
            ims_limiter,
            metrics,
            readiness: Arc::default(),
        };
        let listener = TcpListener::bind(state.config.listen)?;
        let port = listener.local_addr()?.port();
        let ops = match state.config.ops_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)?;
                let port = listener.local_addr()?.port();
                Some((port, serve_ops(listener, state.clone())?))
            }
            None => None,
        };
        let server = serve(listener, state.clone())?;
        Ok(Self {
            port,
            server,
            ops,
            state,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The ops listener's port, when `CCC_OPS_LISTEN` is set.
    pub fn ops_port(&self) -> Option<u16> {
        self.ops.as_ref().map(|(port, _)| *port)
    }

    /// The shared state (for tests and tools).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs until the server is stopped: SIGTERM stops it gracefully (requests in flight finish,
    /// within the shutdown timeout), SIGINT and SIGQUIT at once. Either way every watcher is
    /// answered first (304), so waiting requests never hold up the drain. The ops listener, if
    /// any, stops with it.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let watchers = self.state.watchers.clone();
        let signals = tokio::spawn(async move {
            let graceful = stop_signal().await;
            watchers.shut_down();
            handle.stop(graceful).await;
        });
        let ops = self.ops.map(|(_, ops)| (ops.handle(), tokio::spawn(ops)));
        let stopped = self.server.await;
        signals.abort();
        self.state.watchers.shut_down();
        if let Some((ops_handle, ops)) = ops {
            ops_handle.stop(true).await;
            if let Ok(Err(e)) = ops.await {
                tracing::warn!(error = %e, "the ops listener stopped with an error");
            }
        }
        stopped
    }
}

/// Waits for SIGTERM (`true`: stop gracefully) or SIGINT/SIGQUIT (`false`), as actix-web would.
async fn stop_signal() -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    ) else {
        tracing::error!("could not install the signal handlers; stop the process with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {
            tracing::info!("SIGTERM received; answering watchers and draining");
            true
        }
        _ = int.recv() => {
            tracing::info!("SIGINT received; stopping");
            false
        }
        _ = quit.recv() => {
            tracing::info!("SIGQUIT received; stopping");
            false
        }
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
    // With an ops listener, /metrics is served there only; the probes stay here too, so a load
    // balancer or uptime check on the public port keeps working (they are cheap and cached).
    let configure: fn(&mut utoipa_actix_web::service_config::ServiceConfig<'_>) =
        if state.config.ops_listen.is_some() {
            routes::configure_public
        } else {
            routes::configure
        };
    let metrics = web::Data::from(state.metrics.clone());
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let (app, api) = App::new()
            .into_utoipa_app()
            .openapi(openapi::base())
            .app_data(data.clone())
            .app_data(metrics.clone())
            .app_data(routes::json_config())
            .app_data(routes::query_config())
            .configure(configure)
            .split_for_parts();
        // What is routed is what the document lists, and the document itself beside it.
        let route_table = routes::RouteTable::from_document(&api).with(routes::OPENAPI_PATH, "GET, HEAD");
        app.app_data(route_table)
            .service(SwaggerUi::new("/swagger-ui/{_:.*}").url(routes::OPENAPI_PATH, openapi::finish(api)))
            .default_service(web::to(routes::fallback))
            // Inside the request context (request id, metrics), before every route and extractor.
            .wrap(from_fn(routes::head_as_get_for_docs))
            .wrap(from_fn(routes::read_body_in_time))
            .wrap(from_fn(routes::identity_encoding_only))
            .wrap(from_fn(telemetry::request_context))
    })
    .shutdown_timeout(10)
    // `run_until_stopped` handles the signals: it answers the watchers before the drain.
    .disable_signals()
    // A client that closes its side has gone: drop its request at once, so a watcher it left
    // behind does not wait out its `wait` (HTTP clients do not half-close and then read).
    .h1_allow_half_closed(false)
    .listen(listener)?
    .run();
    Ok(server)
}

/// The `CCC_OPS_LISTEN` server: `/metrics` and the probes, on a worker of its own, so scrapes and
/// probes answer even while the public workers are saturated.
fn serve_ops(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let metrics = web::Data::from(state.metrics.clone());
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let (app, api) = App::new()
            .into_utoipa_app()
            .app_data(data.clone())
            .app_data(metrics.clone())
            .configure(routes::configure_ops)
            .split_for_parts();
        app.app_data(routes::RouteTable::from_document(&api))
            .default_service(web::to(routes::fallback))
            .wrap(from_fn(telemetry::request_context))
    })
    .workers(1)
    .shutdown_timeout(10)
    // Stopped by `run_until_stopped`, after the main listener.
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
