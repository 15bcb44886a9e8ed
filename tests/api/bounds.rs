//! The operator's commands end within a bound we set, whatever the database does (fourth hardening
//! round, item 9): a `tenant` command's statements within `CCC_DB_STATEMENT_TIMEOUT_MS`, `migrate`
//! within `CCC_DB_MIGRATION_TIMEOUT_MS` (the migration lock's wait included).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cc_connection::dev_ims::world;
use sea_orm::{ConnectionTrait, Database, TransactionTrait};

use crate::common::db::{self, Backend};
use crate::helpers::TENANT;

/// Runs `cc-connection <args>` on `url` with `env`; its exit code, standard error and how long it
/// took. Killed (and the test failed) if it runs longer than `deadline`.
fn run_within(
    url: &str,
    args: &[&str],
    env: &[(&str, &str)],
    deadline: Duration,
) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cc-connection"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", url)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cc-connection runs");
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
                started.elapsed(),
            );
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`cc-connection {args:?}` still ran after {deadline:?}: no bound on our side");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn tenant_commands_and_migrate_end_within_their_bounds_while_the_database_holds_them() {
    db::require_postgres();
    let test_db = db::fresh(Backend::Postgres).await;
    let url = test_db.url.clone();
    let add = crate::cli::add_demo_tenant_args(world::ACME_ADMIN_GROUP);
    let plenty = Duration::from_secs(60);
    let blocking = |args: Vec<String>, env: Vec<(&'static str, &'static str)>, deadline| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_within(&url, &args, &env, deadline)
        })
    };
    let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let (code, err, _) = blocking(owned(&["migrate"]), vec![], plenty).await.unwrap();
    assert_eq!(code, Some(0), "{err}");
    let (code, err, _) = blocking(owned(&add), vec![], plenty).await.unwrap();
    assert_eq!(code, Some(0), "{err}");

    // Another session holds the tenant table: a removal waits on it, for half a second at most.
    let holder = Database::connect(&url).await.unwrap();
    let txn = holder.begin().await.unwrap();
    txn.execute_unprepared("LOCK TABLE tenant IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let (code, err, took) = blocking(
        owned(&["tenant", "remove", TENANT]),
        vec![("CCC_DB_STATEMENT_TIMEOUT_MS", "500")],
        plenty,
    )
    .await
    .unwrap();
    eprintln!("tenant remove behind a lock: exit {code:?} after {took:?}: {err}");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("database"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    txn.rollback().await.unwrap();

    // Another session holds the migration lock: `migrate` gives up after its bound.
    holder
        .execute_unprepared(&format!(
            "SELECT pg_advisory_lock({})",
            cc_connection::store::MIGRATION_LOCK
        ))
        .await
        .unwrap();
    let (code, err, took) = blocking(
        owned(&["migrate"]),
        vec![("CCC_DB_MIGRATION_TIMEOUT_MS", "1000")],
        plenty,
    )
    .await
    .unwrap();
    eprintln!("migrate behind the migration lock: exit {code:?} after {took:?}: {err}");
    assert_ne!(code, Some(0), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    holder.close().await.unwrap();

    // Nothing was lost: the tenant is still registered, and commands work again.
    let (code, err, _) = blocking(owned(&["tenant", "show", TENANT]), vec![], plenty)
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{err}");
}
