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

/// For a PostgreSQL-only test: whether PostgreSQL is configured. Without it the test says it is
/// skipped and returns; under `CI=true` it fails instead (CI must run it).
pub fn postgres_or_skip() -> bool {
    if postgres_url().is_some() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI runs this test on PostgreSQL: set TEST_DATABASE_URL"
    );
    eprintln!("skipped: TEST_DATABASE_URL (PostgreSQL) is not set");
    false
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
