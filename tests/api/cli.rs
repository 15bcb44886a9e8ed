//! The `tenant` commands of the real binary, run against the database of a running `serve` process,
//! and what the API answers after each one.

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cc_connection::dev_ims::{DevIms, TokenSpec, world};
use cc_connection::entity::connection;
use migration::MigratorTrait;
use sea_orm::{ColumnTrait, ConnectionTrait, Database, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;

use crate::common::db::{self, Backend};
use crate::helpers::{TENANT, TestApp, admin_token, assert_problem, integration_token};
use crate::process::ServeProcess;

/// Runs `cc-connection <args>` on `database_url`, with `$USER` set to `ops-alice` (which no change
/// may name: the feed says `cli:operator`, or the name given with `--by`).
pub fn ccc(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cc-connection"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("USER", "ops-alice")
        .output()
        .expect("cc-connection runs")
}

/// Runs a command that must succeed; returns its standard output.
pub(crate) fn ok(database_url: &str, args: &[&str]) -> String {
    let out = ccc(database_url, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit code 1 and one line on stderr; returns that line.
pub(crate) fn fails(database_url: &str, args: &[&str]) -> String {
    let out = ccc(database_url, args);
    assert_eq!(out.status.code(), Some(1), "{args:?} exit code");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: one line on stderr: {stderr:?}"
    );
    assert!(out.stdout.is_empty(), "{args:?} printed nothing else");
    stderr.trim_end().to_owned()
}

pub(crate) fn json(database_url: &str, args: &[&str]) -> Value {
    serde_json::from_str(&ok(database_url, args)).unwrap()
}

/// `tenant add` of the demo tenant, administered by `group`.
pub(crate) fn add_demo_tenant_args(group: &str) -> [&str; 7] {
    [
        "tenant",
        "add",
        TENANT,
        "--ims-org",
        world::ACME_HOME_ORG,
        "--admin-group",
        group,
    ]
}

fn add_demo_tenant(url: &str, group: &str) {
    ok(url, &add_demo_tenant_args(group));
}

/// `tenant set-admin-groups` of the demo tenant to `groups`.
fn set_admin_groups(url: &str, groups: &[&str]) {
    let mut args = vec!["tenant", "set-admin-groups", TENANT];
    for group in groups {
        args.extend(["--admin-group", group]);
    }
    ok(url, &args);
}

async fn put(client: &reqwest::Client, base: &str, token: &str, org: &str) -> reqwest::Response {
    client
        .put(format!("{base}{}", TestApp::connection_path(TENANT)))
        .bearer_auth(token)
        .json(&serde_json::json!({ "org_id": org }))
        .send()
        .await
        .unwrap()
}

async fn get(client: &reqwest::Client, base: &str, path: &str, token: &str) -> reqwest::Response {
    client
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn admin_scoped(ims: &DevIms, user: &str) -> String {
    let mut scopes: Vec<&str> = world::USER_SCOPES.to_vec();
    scopes.push(world::ADMIN_SCOPE);
    ims.mint(&TokenSpec::user(user, world::UI_CLIENT, &scopes))
}

#[tokio::test]
async fn tenant_commands_change_what_a_running_serve_answers() {
    for backend in db::backends() {
        let ims = DevIms::start("127.0.0.1:0").await.unwrap();
        let db = db::fresh(backend).await;
        let serve = ServeProcess::spawn(&ims, &db.url);
        let client = reqwest::Client::new();
        serve.wait_ready(&client).await;
        let (url, base) = (db.url.as_str(), serve.base());
        let path = TestApp::connection_path(TENANT);
        let history_path = format!("{path}/history?limit=100");
        let (alice, integration) = (admin_token(&ims), integration_token(&ims));

        add_demo_tenant(url, world::ACME_ADMIN_GROUP);
        let listed = json(url, &["tenant", "list", "--json"]);
        assert_eq!(listed[0]["tenant_id"], TENANT, "{backend:?}: {listed}");
        assert_eq!(
            listed[0]["admin_groups"],
            serde_json::json!([world::ACME_ADMIN_GROUP])
        );
        let res = put(&client, base, &alice, world::ACME_DESIGN_ORG).await;
        assert_eq!(res.status(), 201, "{backend:?}");

        // show: the registry entry, the connection and its history, as the API has them.
        let shown = json(url, &["tenant", "show", TENANT, "--json"]);
        assert_eq!(shown["home_org"], world::ACME_HOME_ORG);
        assert_eq!(shown["connection"]["org_id"], world::ACME_DESIGN_ORG);
        assert_eq!(shown["connection"]["connected_by"], world::ALICE_FEDERATED);
        let api: Value = get(&client, base, &path, &integration)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(shown["connection"], api, "{backend:?}: show says what GET says");
        assert_eq!(shown["history"].as_array().unwrap().len(), 1);
        let text = ok(url, &["tenant", "show", TENANT]);
        assert!(
            text.contains(world::ACME_DESIGN_ORG) && text.contains(world::ALICE_FEDERATED),
            "{text}"
        );

        // set-admin-groups: the running replica judges the next PUT by the new list.
        set_admin_groups(url, &[world::ACME_USERS_GROUP]);
        let res = put(&client, base, &alice, world::ACME_CREATIVE_ORG).await;
        assert_problem(res, 403, "forbidden").await;
        let bob = admin_scoped(&ims, world::BOB_MEMBER);
        let res = put(&client, base, &bob, world::ACME_CREATIVE_ORG).await;
        assert_eq!(
            res.status(),
            200,
            "{backend:?}: bob's group administers the tenant now"
        );
        set_admin_groups(url, &[world::ACME_ADMIN_GROUP, world::ACME_USERS_GROUP]);
        let res = put(&client, base, &alice, world::ACME_DESIGN_ORG).await;
        assert_eq!(res.status(), 200, "{backend:?}");
        let before_removal: Value = res.json().await.unwrap();

        // remove: the connection ends (kept in the history) and the tenant is unknown to the API:
        // integrations are told so, anyone else may not see it (403, as for any unregistered tenant).
        // By a name the operator chose, never the machine's login (`$USER` is ops-alice here).
        let said = ok(url, &["tenant", "remove", TENANT, "--by", "change-4711"]);
        assert!(said.contains("cli:change-4711"), "{said}");
        assert!(!said.contains("ops-alice"), "{said}");
        assert_problem(
            get(&client, base, &path, &integration).await,
            404,
            "unknown-tenant",
        )
        .await;
        assert_problem(get(&client, base, &path, &alice).await, 403, "forbidden").await;
        assert_problem(get(&client, base, &history_path, &alice).await, 403, "forbidden").await;
        let res = put(&client, base, &alice, world::ACME_CREATIVE_ORG).await;
        assert_problem(res, 403, "forbidden").await;
        assert_eq!(json(url, &["tenant", "list", "--json"]), serde_json::json!([]));
        assert!(fails(url, &["tenant", "show", TENANT]).contains("not registered"));
        let active = connection::Entity::find()
            .filter(connection::Column::Active.eq(true))
            .count(&Database::connect(url).await.unwrap())
            .await
            .unwrap();
        assert_eq!(active, 0, "{backend:?}: no active row after remove");

        // Added again: no connection, and the history goes on where it stopped.
        add_demo_tenant(url, world::ACME_ADMIN_GROUP);
        assert_problem(
            get(&client, base, &path, &integration).await,
            404,
            "no-connection",
        )
        .await;
        let history: Value = get(&client, base, &history_path, &alice)
            .await
            .json()
            .await
            .unwrap();
        let removed = &history["entries"][0];
        assert_eq!(removed["org_id"], world::ACME_DESIGN_ORG, "{history}");
        assert_eq!(removed["revision"], before_removal["revision"]);
        assert_eq!(removed["active"], false);
        assert_eq!(removed["end_reason"], "tenant-removed");
        assert_eq!(removed["ended_by"], "cli:change-4711");
        assert_eq!(history["entries"].as_array().unwrap().len(), 3, "{history}");
        let res = put(&client, base, &alice, world::ACME_CREATIVE_ORG).await;
        assert_eq!(res.status(), 201, "{backend:?}: a new first connection");
        let body: Value = res.json().await.unwrap();
        assert!(
            body["revision"].as_i64() > before_removal["revision"].as_i64(),
            "{backend:?}: revisions keep increasing: {body} after {before_removal}"
        );
        let shown = json(url, &["tenant", "show", TENANT, "--json", "--history", "2"]);
        assert_eq!(shown["history"].as_array().unwrap().len(), 2);
        assert_eq!(shown["history"][1]["end_reason"], "tenant-removed");
    }
}

#[tokio::test]
async fn tenant_commands_on_an_unknown_tenant_say_so_in_one_line_and_exit_1() {
    for backend in db::backends() {
        let db = db::fresh(backend).await;
        ok(&db.url, &["migrate"]);
        for args in [
            &["tenant", "show", "nope"][..],
            &["tenant", "show", "nope", "--json"],
            &["tenant", "set-admin-groups", "nope", "--admin-group", "1"],
            &["tenant", "remove", "nope"],
        ] {
            let line = fails(&db.url, args);
            assert_eq!(
                line, "error: tenant nope is not registered",
                "{backend:?} {args:?}"
            );
        }
        add_demo_tenant(&db.url, "1");
        ok(&db.url, &["tenant", "remove", TENANT]);
        let line = fails(&db.url, &["tenant", "remove", TENANT]);
        assert!(
            line.contains("not registered"),
            "{backend:?}: removed twice: {line}"
        );
        let line = fails(
            &db.url,
            &[
                "tenant",
                "add",
                "globex",
                "--ims-org",
                world::OTHER_ORG,
                "--admin-group",
                "",
            ],
        );
        assert!(line.contains("--admin-group"), "{line}");
    }
}

#[tokio::test]
async fn tenant_commands_never_migrate_and_refuse_an_older_schema() {
    for backend in db::backends() {
        let db = db::fresh(backend).await;
        let conn = Database::connect(&db.url).await.unwrap();
        let refuse = |args: &[&str]| {
            let line = fails(&db.url, args);
            assert!(
                line.contains("run `cc-connection migrate`"),
                "{backend:?} {args:?}: {line}"
            );
        };
        // An empty database stays empty: not even the migrations table is created.
        refuse(&["tenant", "list"]);
        refuse(&["tenant", "list", "--json"]);
        refuse(&["tenant", "show", TENANT]);
        let tables = |sql: &'static str| {
            let conn = conn.clone();
            async move {
                conn.query_all_raw(sea_orm::Statement::from_string(conn.get_database_backend(), sql))
                    .await
                    .unwrap()
                    .len()
            }
        };
        let list_tables = match backend {
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
            Backend::Postgres => "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
        };
        assert_eq!(tables(list_tables).await, 0, "{backend:?}: no table was created");

        // A schema one step older than the binary: reads and writes are refused, nothing changes.
        let all = migration::Migrator::migrations().len() as u32;
        migration::Migrator::up(&conn, Some(all - 1)).await.unwrap();
        refuse(&["tenant", "list"]);
        refuse(&add_demo_tenant_args("1"));
        refuse(&["tenant", "set-admin-groups", TENANT, "--admin-group", "1"]);
        refuse(&["tenant", "remove", TENANT]);
        let pending = migration::Migrator::get_pending_migrations(&conn).await.unwrap();
        assert_eq!(pending.len(), 1, "{backend:?}: still one migration pending");
        assert_eq!(
            tables("SELECT tenant_id FROM tenant").await,
            0,
            "{backend:?}: nothing added"
        );

        ok(&db.url, &["migrate"]);
        add_demo_tenant(&db.url, "1");
        assert_eq!(
            json(&db.url, &["tenant", "list", "--json"])[0]["tenant_id"],
            TENANT
        );
        conn.close().await.unwrap();
    }
}

/// `tenant remove` racing switches of the same tenant on a replica: each round, the tenant is
/// connected, a burst of switches runs while the operator removes it; whichever order the database
/// chose, it never holds two active rows, and after the removal none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn remove_racing_switches_on_postgres_leaves_no_active_row() {
    db::require_postgres();
    const ROUNDS: usize = 12;
    const SWITCHERS: usize = 4;
    let ims = DevIms::start("127.0.0.1:0").await.unwrap();
    let db = db::fresh(Backend::Postgres).await;
    let serve = ServeProcess::spawn(&ims, &db.url);
    let client = reqwest::Client::new();
    serve.wait_ready(&client).await;
    let conn = Database::connect(&db.url).await.unwrap();
    let active_rows = |conn: sea_orm::DatabaseConnection| async move {
        connection::Entity::find()
            .filter(connection::Column::TenantId.eq(TENANT))
            .filter(connection::Column::Active.eq(true))
            .count(&conn)
            .await
            .unwrap()
    };

    // Samples the active rows all through the rounds.
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, most, conn) = (done.clone(), most.clone(), conn.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(active_rows(conn.clone()).await, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let admin = admin_token(&ims);
    let (mut acknowledged, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        add_demo_tenant(&db.url, world::ACME_ADMIN_GROUP);
        let res = put(&client, serve.base(), &admin, world::ACME_CREATIVE_ORG).await;
        assert_eq!(res.status(), 201, "round {round}");
        let switchers: Vec<_> = (0..SWITCHERS)
            .map(|s| {
                let (client, base, admin) = (client.clone(), serve.base().to_owned(), admin.clone());
                tokio::spawn(async move {
                    // Switching until the removal has refused three (bounded): both orders
                    // happen however fast switches are against the start of the removing
                    // command, and switches after a refusal show none succeeds again.
                    let mut outcomes = Vec::new();
                    let mut refusals = 0;
                    for i in 0..400 {
                        let org = [world::ACME_DESIGN_ORG, world::ACME_CREATIVE_ORG][(s + i) % 2];
                        let res = put(&client, &base, &admin, org).await;
                        let status = res.status().as_u16();
                        let body: Value = res.json().await.unwrap();
                        outcomes.push((status, body));
                        refusals += usize::from(status == 403);
                        if refusals == 3 {
                            break;
                        }
                    }
                    outcomes
                })
            })
            .collect();
        // Let the switches get going, a little later each round, then remove.
        tokio::time::sleep(Duration::from_millis(2 * round as u64)).await;
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || ok(&url, &["tenant", "remove", TENANT]))
            .await
            .unwrap();
        let mut after_removal = false;
        for switcher in switchers {
            for (status, body) in switcher.await.unwrap() {
                match status {
                    200 | 201 => {
                        assert!(!after_removal, "round {round}: a switch succeeded after a 403");
                        acknowledged += 1;
                        let revision = body["revision"].as_i64().unwrap();
                        let row = connection::Entity::find()
                            .filter(connection::Column::TenantId.eq(TENANT))
                            .filter(connection::Column::Revision.eq(revision))
                            .one(&conn)
                            .await
                            .unwrap()
                            .expect("an acknowledged switch is in the history");
                        assert!(!row.active, "round {round}: revision {revision} is still active");
                    }
                    // The tenant is gone: to its administrator, one they may not see.
                    403 => {
                        assert_eq!(body["type"], "/problems/forbidden", "round {round}");
                        refused += 1;
                        after_removal = true;
                    }
                    409 => assert_eq!(body["type"], "/problems/concurrent-switch"),
                    other => panic!("round {round}: a switch answered {other}: {body}"),
                }
            }
            after_removal = false;
        }
        assert_eq!(
            active_rows(conn.clone()).await,
            0,
            "round {round}: no active row after remove"
        );
        let path = TestApp::connection_path(TENANT);
        let res = get(&client, serve.base(), &path, &integration_token(&ims)).await;
        assert_problem(res, 404, "unknown-tenant").await;
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    assert!(most.load(Ordering::Relaxed) <= 1, "never two active rows");
    // Both orders happened: switches that committed before the removal and ones refused after it.
    assert!(
        acknowledged > ROUNDS && refused > 0,
        "acknowledged {acknowledged}, refused {refused}"
    );
    eprintln!("{ROUNDS} rounds: {acknowledged} switches acknowledged, {refused} refused after removal");
}

/// Item 9 of the third hardening round: what the operator's terminal shows holds nothing it would
/// act on, even for an org name stored raw (before names from IMS were cleaned).
#[tokio::test]
async fn tenant_show_prints_no_control_characters() {
    use cc_connection::domain::{OrgId, TenantId, UserId};
    use cc_connection::store::SwitchRequest;
    for backend in db::backends() {
        let app = crate::helpers::spawn_app(backend).await;
        let raw = "Evil\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{7f}\u{202e} Org";
        app.state
            .store
            .switch(&SwitchRequest {
                tenant_id: TenantId::parse(TENANT).unwrap(),
                org_id: OrgId::parse(world::ACME_CREATIVE_ORG).unwrap(),
                org_name: raw.to_owned(),
                by: UserId::parse(world::ALICE_FEDERATED).unwrap(),
                at: chrono::Utc::now(),
                preconditions: cc_connection::domain::Preconditions::NONE,
            })
            .await
            .unwrap();
        let acted_on = |c: char| c.is_control() && c != '\n' || c == '\u{202e}';
        let text = ok(&app.db.url, &["tenant", "show", TENANT]);
        assert!(!text.chars().any(acted_on), "{backend:?}: {text:?}");
        assert!(text.contains("Evil\u{fffd}[2J"), "shown, made harmless: {text}");
        let json_text = ok(&app.db.url, &["tenant", "show", TENANT, "--json"]);
        assert!(!json_text.chars().any(acted_on), "{backend:?}: {json_text:?}");
        // Still the same JSON: the stored name, escaped.
        let shown: Value = serde_json::from_str(&json_text).unwrap();
        assert_eq!(shown["connection"]["org_name"], raw);
        let listed = ok(&app.db.url, &["tenant", "list"]);
        assert!(!listed.chars().any(acted_on));
    }
}

/// Item 11 of the third hardening round: a reading command creates nothing. On a SQLite path with
/// no database it says so in one line and exits 1; the file is not created.
#[test]
fn tenant_commands_on_a_missing_sqlite_file_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    for args in [
        &["tenant", "list"][..],
        &["tenant", "show", TENANT],
        &["tenant", "remove", TENANT],
    ] {
        let said = fails(&url, args);
        assert!(said.contains("does not exist"), "{args:?}: {said}");
        assert!(!path.exists(), "{args:?} created {}", path.display());
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

#[tokio::test]
async fn tenant_remove_beside_a_running_app_wakes_a_held_watch() {
    // Another process's commit: on SQLite no notification carries it (PostgreSQL's NOTIFY does,
    // tested with the change feed).
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let reader = app.integration_token();
    let res = put(
        &app.client,
        &app.address,
        &app.admin_token(),
        world::ACME_CREATIVE_ORG,
    )
    .await;
    assert_eq!(res.status(), 201);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let watch = app
        .request(
            reqwest::Method::GET,
            &format!("{}?wait=30", TestApp::connection_path(TENANT)),
            Some(&reader),
        )
        .header("If-None-Match", etag)
        .send();
    let started = std::time::Instant::now();
    let watch = tokio::spawn(watch);
    crate::helpers::wait_for("the watch to be held", Duration::from_secs(5), || {
        std::future::ready(app.state.watchers.count() == 1)
    })
    .await;

    let url = app.db.url.clone();
    tokio::task::spawn_blocking(move || ok(&url, &["tenant", "remove", TENANT]))
        .await
        .unwrap();
    let res = watch.await.unwrap().unwrap();
    let took = started.elapsed();
    assert_problem(res, 404, "unknown-tenant").await;
    assert!(
        took < Duration::from_secs(10),
        "woken within about a second of the other process's commit, not at the 30 s deadline: {took:?}"
    );
}
