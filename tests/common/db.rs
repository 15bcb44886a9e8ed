//! Fresh databases for tests: a new SQLite file, or a new PostgreSQL database on the server of
//! `TEST_DATABASE_URL`, dropped when the test ends.

use sea_orm::{ConnectionTrait, Database};

/// A database backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temporary SQLite file.
    Sqlite,
    /// A fresh database on the PostgreSQL of `TEST_DATABASE_URL`.
    Postgres,
}

/// SQLite always; PostgreSQL too when `TEST_DATABASE_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if postgres_url().is_some() {
        all.push(Backend::Postgres);
    }
    all
}

/// Why a PostgreSQL-only test is ignored under a plain `cargo test`; CI runs it with
/// `--include-ignored`.
pub const NEEDS_POSTGRES: &str = "needs PostgreSQL: set TEST_DATABASE_URL";

/// First line of a PostgreSQL-only test (`#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]`):
/// run without PostgreSQL configured, it fails at once and says why, never passes.
pub fn require_postgres() {
    assert!(
        postgres_url().is_some(),
        "{NEEDS_POSTGRES} (a postgres:// URL of a server whose user may create databases)"
    );
}

/// The tests that loop over `backends()` pass on SQLite alone when PostgreSQL is not configured:
/// this one shows beside them as ignored then, and fails under `--include-ignored` (CI), so their
/// PostgreSQL halves are never silently left out.
#[test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
fn postgres_halves_of_the_tests_on_both_backends_run() {
    require_postgres();
}

fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

/// A fresh, empty database; removed on drop.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

/// Creates a fresh database on `backend`.
pub async fn fresh(backend: Backend) -> TestDb {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::Builder::new()
                .prefix("ccc-test-")
                .tempdir()
                .expect("temp dir");
            let url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
            TestDb {
                url,
                cleanup: Cleanup::File(dir),
            }
        }
        Backend::Postgres => {
            let admin_url = postgres_url().expect("TEST_DATABASE_URL");
            let name = format!("ccc_test_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(&admin_url).await.expect("PostgreSQL reachable");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create database");
            admin.close().await.ok();
            let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
            TestDb {
                url: format!("{base}/{name}"),
                cleanup: Cleanup::Postgres { admin_url, name },
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(admin) = Database::connect(&admin_url).await {
                        let _ = admin
                            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                        let _ = admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}
