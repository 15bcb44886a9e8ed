//! The data layer on each backend: the registry, the switch transaction, the history, and the
//! database constraint that keeps one active connection per tenant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cc_connection::domain::{OrgId, Precondition, Revision, TenantId, UserId};
use cc_connection::store::{DbOptions, Store, StoreError, SwitchOutcome, SwitchRequest};
use chrono::Utc;
use common::db::{self, Backend, TestDb};
use sea_orm::ConnectionTrait;

const HOME: &str = "A0A0A0A0A0A0A0A0A0A0A0A0@AdobeOrg";
const ORG_A: &str = "C0FFEE00C0FFEE00C0FFEE00@AdobeOrg";
const ORG_B: &str = "D0D0D0D0D0D0D0D0D0D0D0D0@AdobeOrg";
const ORG_C: &str = "B0B0B0B0B0B0B0B0B0B0B0B0@AdobeOrg";

fn tenant() -> TenantId {
    TenantId::parse("acme-prod").unwrap()
}

fn admin() -> UserId {
    UserId::parse("A11CE000000000000000FED0@1a2b3c4d5e").unwrap()
}

async fn open(db: &TestDb, pool: u32) -> Store {
    Store::connect(
        &db.url,
        &DbOptions {
            max_connections: pool,
            connect_timeout: std::time::Duration::from_secs(10),
            ..DbOptions::default()
        },
    )
    .await
    .unwrap()
}

async fn with_tenant(backend: Backend) -> (TestDb, Store) {
    let db = db::fresh(backend).await;
    let store = open(&db, 5).await;
    store.migrate().await.unwrap();
    store
        .add_tenant(&tenant(), &OrgId::parse(HOME).unwrap(), &["700001".to_owned()])
        .await
        .unwrap();
    (db, store)
}

/// Whether the registered test tenant has an active connection.
async fn is_connected(store: &Store) -> bool {
    let view = store.tenant_view(&tenant()).await.unwrap();
    view.expect("the tenant is registered").active.is_some()
}

fn switch_to(org: &str, if_match: Option<Precondition>) -> SwitchRequest {
    SwitchRequest {
        tenant_id: tenant(),
        org_id: OrgId::parse(org).unwrap(),
        org_name: format!("name of {org}"),
        by: admin(),
        at: Utc::now(),
        if_match,
    }
}

#[tokio::test]
async fn tenants_are_registered_once_and_listed() {
    for backend in db::backends() {
        let (_db, store) = with_tenant(backend).await;
        let err = store
            .add_tenant(&tenant(), &OrgId::parse(HOME).unwrap(), &[])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TenantExists), "{backend:?}: {err:?}");
        let other = TenantId::parse("globex").unwrap();
        store
            .add_tenant(&other, &OrgId::parse(ORG_C).unwrap(), &["1".into(), "2".into()])
            .await
            .unwrap();
        let all = store.list_tenants().await.unwrap();
        assert_eq!(
            all.iter().map(|t| t.tenant_id.as_str()).collect::<Vec<_>>(),
            ["acme-prod", "globex"]
        );
        assert_eq!(all[1].admin_groups, ["1", "2"]);
        assert!(
            store
                .tenant_view(&TenantId::parse("nobody").unwrap())
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn switch_creates_replaces_and_leaves_an_unchanged_org_alone() {
    for backend in db::backends() {
        let (_db, store) = with_tenant(backend).await;
        let SwitchOutcome::Created(first) = store.switch(&switch_to(ORG_A, None)).await.unwrap() else {
            panic!("{backend:?}: first switch creates")
        };
        assert_eq!(first.revision.get(), 1);
        let SwitchOutcome::Unchanged(same) = store.switch(&switch_to(ORG_A, None)).await.unwrap() else {
            panic!("{backend:?}: same org is unchanged")
        };
        assert_eq!(same, first);
        let SwitchOutcome::Replaced(second) = store.switch(&switch_to(ORG_B, None)).await.unwrap() else {
            panic!("{backend:?}: other org replaces")
        };
        assert_eq!(
            second.revision.get(),
            2,
            "{backend:?}: the unchanged switch did not bump the revision"
        );
        let view = store.tenant_view(&tenant()).await.unwrap().unwrap();
        assert_eq!(view.active.as_ref(), Some(&second));
        let history = store.history(&tenant(), 10, None).await.unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].org_id.as_str(), ORG_A);
        assert!(!history[1].active);
        assert_eq!(history[1].ended_by.as_ref(), Some(&admin().into()));
        assert_eq!(
            history[1].connected_at, first.connected_at,
            "{backend:?}: timestamps round-trip"
        );
    }
}

#[tokio::test]
async fn stale_if_match_fails_and_leaves_everything_as_it_was() {
    for backend in db::backends() {
        let (_db, store) = with_tenant(backend).await;
        let err = store
            .switch(&switch_to(ORG_A, Some(Precondition::Any)))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::PreconditionFailed), "{backend:?}");
        store.switch(&switch_to(ORG_A, None)).await.unwrap();
        let err = store
            .switch(&switch_to(ORG_B, Some(Precondition::Revision(Revision::new(7)))))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::PreconditionFailed), "{backend:?}");
        let view = store.tenant_view(&tenant()).await.unwrap().unwrap();
        assert_eq!(
            view.tenant.revision.get(),
            1,
            "{backend:?}: a refused switch does not bump the revision"
        );
        assert_eq!(view.active.unwrap().org_id.as_str(), ORG_A);
        assert!(matches!(
            store
                .switch(&switch_to(ORG_B, Some(Precondition::Revision(Revision::new(1)))))
                .await
                .unwrap(),
            SwitchOutcome::Replaced(_)
        ));
    }
}

#[tokio::test]
async fn disconnect_ends_the_connection_and_revisions_never_repeat() {
    for backend in db::backends() {
        let (_db, store) = with_tenant(backend).await;
        let err = store
            .disconnect(&tenant(), &admin(), Utc::now(), None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NoConnection), "{backend:?}");
        store.switch(&switch_to(ORG_A, None)).await.unwrap();
        let ended = store
            .disconnect(
                &tenant(),
                &admin(),
                Utc::now(),
                Some(Precondition::Revision(Revision::new(1))),
            )
            .await
            .unwrap();
        assert!(!ended.active);
        assert!(!is_connected(&store).await);
        let SwitchOutcome::Created(again) = store.switch(&switch_to(ORG_A, None)).await.unwrap() else {
            panic!("{backend:?}: reconnecting creates")
        };
        assert_eq!(again.revision.get(), 3, "{backend:?}");
        let unknown = TenantId::parse("nobody").unwrap();
        assert!(matches!(
            store.history(&unknown, 10, None).await.unwrap_err(),
            StoreError::UnknownTenant
        ));
        assert!(matches!(
            store
                .switch(&SwitchRequest {
                    tenant_id: unknown,
                    ..switch_to(ORG_A, None)
                })
                .await
                .unwrap_err(),
            StoreError::UnknownTenant
        ));
    }
}

#[tokio::test]
async fn history_pages_by_revision() {
    for backend in db::backends() {
        let (_db, store) = with_tenant(backend).await;
        for org in [ORG_A, ORG_B, ORG_C, ORG_A, ORG_B] {
            store.switch(&switch_to(org, None)).await.unwrap();
        }
        let page = store.history(&tenant(), 2, None).await.unwrap();
        assert_eq!(page.iter().map(|r| r.revision.get()).collect::<Vec<_>>(), [5, 4]);
        let page = store.history(&tenant(), 2, Some(Revision::new(4))).await.unwrap();
        assert_eq!(page.iter().map(|r| r.revision.get()).collect::<Vec<_>>(), [3, 2]);
        let page = store.history(&tenant(), 2, Some(Revision::new(2))).await.unwrap();
        assert_eq!(page.iter().map(|r| r.revision.get()).collect::<Vec<_>>(), [1]);
    }
}

#[tokio::test]
async fn the_database_refuses_a_second_active_connection() {
    for backend in db::backends() {
        let (_db, store) = with_tenant(backend).await;
        store.switch(&switch_to(ORG_A, None)).await.unwrap();
        // Bypass the store, as a buggy writer or a manual fix-up would.
        let truth = if backend == Backend::Sqlite { "1" } else { "TRUE" };
        let sql = format!(
            "INSERT INTO connection (tenant_id, org_id, org_name, connected_by, connected_at, revision, active) \
             VALUES ('acme-prod', '{ORG_B}', 'x', 'u@AdobeID', CURRENT_TIMESTAMP, 99, {truth})"
        );
        let err = store.connection().execute_unprepared(&sql).await.unwrap_err();
        assert!(
            matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))),
            "{backend:?}: {err}"
        );
        // An inactive row for history is fine.
        let inactive = sql.replace(
            &format!(", {truth})"),
            if backend == Backend::Sqlite {
                ", 0)"
            } else {
                ", FALSE)"
            },
        );
        store.connection().execute_unprepared(&inactive).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_switches_from_three_pools_leave_exactly_one_active_row() {
    for backend in db::backends() {
        let (db, first) = with_tenant(backend).await;
        let replicas = [first, open(&db, 5).await, open(&db, 5).await];
        let orgs = [ORG_A, ORG_B, ORG_C];
        let calls = (0..90).map(|i| {
            let store = replicas[i % 3].clone();
            let req = switch_to(orgs[(i / 3) % 3], None);
            tokio::spawn(async move { store.switch(&req).await })
        });
        let mut acknowledged = Vec::new();
        for joined in futures_util::future::join_all(calls).await {
            match joined.unwrap() {
                Ok(SwitchOutcome::Created(r) | SwitchOutcome::Replaced(r)) => acknowledged.push(r.revision),
                Ok(SwitchOutcome::Unchanged(_)) => {}
                Err(e) => panic!("{backend:?}: switch failed: {e:?}"),
            }
        }
        let history = replicas[0].history(&tenant(), 1000, None).await.unwrap();
        assert_eq!(history.iter().filter(|r| r.active).count(), 1, "{backend:?}");
        let revisions: Vec<Revision> = history.iter().map(|r| r.revision).collect();
        assert!(revisions.windows(2).all(|w| w[0] > w[1]), "{backend:?}: ordered");
        acknowledged.sort_unstable();
        let mut stored = revisions.clone();
        stored.sort_unstable();
        assert_eq!(
            acknowledged, stored,
            "{backend:?}: every acknowledged switch, and only those, in history"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_migrating_at_once_all_succeed() {
    for backend in db::backends() {
        let db = db::fresh(backend).await;
        let stores = [open(&db, 3).await, open(&db, 3).await, open(&db, 3).await];
        let runs = stores
            .iter()
            .cloned()
            .map(|s| tokio::spawn(async move { s.migrate().await }));
        for run in futures_util::future::join_all(runs).await {
            run.unwrap()
                .unwrap_or_else(|e| panic!("{backend:?}: concurrent migrate failed: {e:?}"));
        }
        stores[0]
            .add_tenant(&tenant(), &OrgId::parse(HOME).unwrap(), &[])
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_in_memory_sqlite_database_is_migrated_and_usable() {
    let mut config = cc_connection::config::Config::defaults(cc_connection::config::Mode::Dev);
    config.database_url = Some("sqlite::memory:".into());
    let store = cc_connection::startup::open_store(&config).await.unwrap();
    store
        .add_tenant(&tenant(), &OrgId::parse(HOME).unwrap(), &["700001".to_owned()])
        .await
        .unwrap();
    assert_eq!(store.list_tenants().await.unwrap().len(), 1);
}

/// The removal mark's migration, up and down: down forgets removed tenants (an older binary could
/// not tell them apart) and keeps the others with their history; up again brings the column back.
#[tokio::test]
async fn the_removal_mark_migrates_up_and_down() {
    use migration::{Migrator, MigratorTrait, SchemaManager};
    use sea_orm::Statement;
    for backend in db::backends() {
        let (_db, store) = with_tenant(backend).await;
        let conn = store.connection();
        let count = |sql: &'static str| async move {
            let backend = conn.get_database_backend();
            conn.query_all_raw(Statement::from_string(backend, sql))
                .await
                .unwrap()
                .len()
        };
        let has_mark = || async {
            SchemaManager::new(conn)
                .has_column("tenant", "removed_at")
                .await
                .unwrap()
        };
        assert!(has_mark().await, "{backend:?}");
        store.switch(&switch_to(ORG_A, None)).await.unwrap();
        let gone = TenantId::parse("globex").unwrap();
        store
            .add_tenant(&gone, &OrgId::parse(ORG_C).unwrap(), &["1".into()])
            .await
            .unwrap();
        let by = cc_connection::domain::Actor::operator("ops");
        store.remove_tenant(&gone, &by, Utc::now()).await.unwrap();

        // Down three: the webhook endpoints' and the change feed's migrations (newer), then the
        // removal mark's.
        Migrator::down(conn, Some(3)).await.unwrap();
        assert!(!has_mark().await, "{backend:?}: down drops the column");
        assert_eq!(
            count("SELECT tenant_id FROM tenant").await,
            1,
            "{backend:?}: the removed tenant is gone"
        );
        assert_eq!(
            count("SELECT id FROM connection").await,
            1,
            "{backend:?}: the kept tenant's history stays"
        );
        assert_eq!(Migrator::get_pending_migrations(conn).await.unwrap().len(), 3);

        Migrator::up(conn, None).await.unwrap();
        assert!(has_mark().await, "{backend:?}: up adds it again");
        assert_eq!(store.list_tenants().await.unwrap().len(), 1);
        assert!(is_connected(&store).await);
    }
}

#[tokio::test]
async fn a_removed_tenant_is_unknown_until_added_again_and_its_revisions_go_on() {
    for backend in db::backends() {
        let (_db, store) = with_tenant(backend).await;
        store.switch(&switch_to(ORG_A, None)).await.unwrap();
        let by = cc_connection::domain::Actor::operator("ops");
        let ended = store
            .remove_tenant(&tenant(), &by, Utc::now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ended.ended_by.as_ref(), Some(&by));
        assert!(store.tenant(&tenant()).await.unwrap().is_none(), "{backend:?}");
        assert!(
            store.tenant_view(&tenant()).await.unwrap().is_none(),
            "{backend:?}"
        );
        assert!(matches!(
            store.switch(&switch_to(ORG_B, None)).await,
            Err(StoreError::UnknownTenant)
        ));
        assert!(matches!(
            store.set_admin_groups(&tenant(), &["2".into()]).await,
            Err(StoreError::UnknownTenant)
        ));
        assert!(matches!(
            store.remove_tenant(&tenant(), &by, Utc::now()).await,
            Err(StoreError::UnknownTenant)
        ));

        let again = store
            .add_tenant(&tenant(), &OrgId::parse(HOME).unwrap(), &["9".into()])
            .await
            .unwrap();
        assert_eq!(again.admin_groups, ["9"]);
        assert!(again.revision > ended.revision, "{backend:?}");
        assert!(!is_connected(&store).await);
        let history = store.history(&tenant(), 10, None).await.unwrap();
        assert_eq!(
            history[0].end_reason,
            Some(cc_connection::store::EndReason::TenantRemoved)
        );
        assert!(matches!(
            store
                .add_tenant(&tenant(), &OrgId::parse(HOME).unwrap(), &[])
                .await,
            Err(StoreError::TenantExists)
        ));
    }
}

/// `n` tenants `t000`.. with admin group `g<i>`; every even one connected to ORG_A under the
/// name `org of t<i>`, so each read's answer can be told apart from every other's.
async fn many_tenants(store: &Store, n: usize) {
    for i in 0..n {
        let id = TenantId::parse(&format!("t{i:03}")).unwrap();
        store
            .add_tenant(&id, &OrgId::parse(HOME).unwrap(), &[format!("g{i}")])
            .await
            .unwrap();
        if i % 2 == 0 {
            store
                .switch(&SwitchRequest {
                    tenant_id: id.clone(),
                    org_name: format!("org of {id}"),
                    ..switch_to(ORG_A, None)
                })
                .await
                .unwrap();
        }
    }
}

/// Checks one read's answer against what `many_tenants` stored (`i >= n`: unknown tenant).
fn assert_view_of(backend: Backend, i: usize, n: usize, view: Option<cc_connection::store::TenantView>) {
    if i >= n {
        assert!(view.is_none(), "{backend:?}: unknown tenant t{i:03} -> None");
        return;
    }
    let view = view.unwrap_or_else(|| panic!("{backend:?}: t{i:03} is registered"));
    assert_eq!(view.tenant.tenant_id.as_str(), format!("t{i:03}"), "{backend:?}");
    assert_eq!(view.tenant.admin_groups, [format!("g{i}")], "{backend:?}");
    match view.active {
        Some(c) => {
            assert_eq!(i % 2, 0, "{backend:?}: t{i:03} has no connection");
            assert_eq!(c.tenant_id.as_str(), format!("t{i:03}"));
            assert_eq!(c.org_name, format!("org of t{i:03}"));
            assert_eq!(c.org_id.as_str(), ORG_A);
            assert_eq!(c.revision, view.tenant.revision);
            assert!(c.active);
        }
        None => assert_eq!(i % 2, 1, "{backend:?}: t{i:03} is connected"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reads_of_many_and_equal_tenants_each_get_their_own_answer_in_fewer_queries() {
    const N: usize = 40;
    for backend in db::backends() {
        let db = db::fresh(backend).await;
        let store = open(&db, 5).await;
        store.migrate().await.unwrap();
        many_tenants(&store, N).await;
        let (queries_before, reads_before) = store.read_stats();
        // 600 reads of 50 tenants (10 of them unknown): every tenant is read by many at once.
        let reads = (0..600).map(|k| {
            let store = store.clone();
            let i = (k * 7) % (N + 10);
            tokio::spawn(async move {
                let id = TenantId::parse(&format!("t{i:03}")).unwrap();
                (i, store.tenant_view(&id).await)
            })
        });
        for joined in futures_util::future::join_all(reads).await {
            let (i, answer) = joined.unwrap();
            let view = answer.unwrap_or_else(|e| panic!("{backend:?}: read failed: {e:?}"));
            assert_view_of(backend, i, N, view);
        }
        let (queries, reads) = store.read_stats();
        let (queries, reads) = (queries - queries_before, reads - reads_before);
        assert_eq!(reads, 600, "{backend:?}");
        assert!(
            queries < reads,
            "{backend:?}: concurrent reads share queries ({queries} queries for {reads} reads)"
        );
    }
}

/// A fresh, migrated database on `backend` with `n` tenants, behind a pool of two connections.
async fn small_pool_with_many_tenants(backend: Backend, n: usize) -> (TestDb, Store) {
    let db = db::fresh(backend).await;
    let store = small_pool(&db).await;
    store.migrate().await.unwrap();
    many_tenants(&store, n).await;
    (db, store)
}

/// A store with a pool of two, giving up on a connection after one second.
async fn small_pool(db: &TestDb) -> Store {
    Store::connect(
        &db.url,
        &DbOptions {
            max_connections: 2,
            connect_timeout: std::time::Duration::from_secs(1),
            ..DbOptions::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_read_query_answers_every_read_in_it_unavailable_and_the_next_reads_succeed() {
    const N: usize = 6;
    for backend in db::backends() {
        let (_db, store) = small_pool_with_many_tenants(backend, N).await;
        // Something else holds both connections of the pool: the read query cannot get one.
        let held = [
            sea_orm::TransactionTrait::begin(store.connection())
                .await
                .unwrap(),
            sea_orm::TransactionTrait::begin(store.connection())
                .await
                .unwrap(),
        ];
        let reads = (0..40).map(|k| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = TenantId::parse(&format!("t{:03}", k % N)).unwrap();
                store.tenant_view(&id).await
            })
        });
        for joined in futures_util::future::join_all(reads).await {
            let err = joined.unwrap().unwrap_err();
            assert!(
                matches!(err, StoreError::Unavailable(_)),
                "{backend:?}: every read of the failed query is told the database is unavailable: {err:?}"
            );
        }
        drop(held);
        for i in 0..N + 1 {
            let id = TenantId::parse(&format!("t{i:03}")).unwrap();
            assert_view_of(backend, i, N, store.tenant_view(&id).await.unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_given_up_by_their_callers_do_not_break_the_query_for_the_others() {
    const N: usize = 6;
    for backend in db::backends() {
        let (_db, store) = small_pool_with_many_tenants(backend, N).await;
        // Reads queue up while the pool is held, then half of their callers go away.
        let held = sea_orm::TransactionTrait::begin(store.connection())
            .await
            .unwrap();
        let held2 = sea_orm::TransactionTrait::begin(store.connection())
            .await
            .unwrap();
        let reads: Vec<_> = (0..60)
            .map(|k| {
                let store = store.clone();
                let i = k % (N + 1);
                tokio::spawn(async move {
                    let id = TenantId::parse(&format!("t{i:03}")).unwrap();
                    (i, store.tenant_view(&id).await)
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        for read in reads.iter().step_by(2) {
            read.abort();
        }
        drop((held, held2));
        let mut answered = 0;
        for (k, joined) in futures_util::future::join_all(reads)
            .await
            .into_iter()
            .enumerate()
        {
            match joined {
                Ok((i, answer)) => {
                    assert_view_of(backend, i, N, answer.unwrap());
                    answered += 1;
                }
                Err(e) => assert!(e.is_cancelled() && k % 2 == 0, "{backend:?}: {e:?}"),
            }
        }
        assert_eq!(
            answered, 30,
            "{backend:?}: every read still waited for is answered"
        );
        assert_view_of(
            backend,
            0,
            N,
            store
                .tenant_view(&TenantId::parse("t000").unwrap())
                .await
                .unwrap(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_queued_behind_a_query_whose_worker_stopped_are_still_answered() {
    const N: usize = 3;
    for backend in db::backends() {
        let db = db::fresh(backend).await;
        let store = Store::connect(
            &db.url,
            &DbOptions {
                max_connections: 2,
                read_batches_in_flight: 1,
                ..DbOptions::default()
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        many_tenants(&store, N).await;
        // A worker's runtime takes a read: its query task is spawned there, and not yet run.
        let first = store.clone();
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let id = TenantId::parse("t000").unwrap();
                let read = first.tenant_view(&id);
                tokio::select! {
                    biased;
                    _ = read => panic!("the query task has not run yet"),
                    () = std::future::ready(()) => {}
                }
            });
            rt
        })
        .join()
        .unwrap();
        // A read of another worker queues behind that query (one query at a time).
        let second = store.clone();
        let mut queued =
            tokio::spawn(async move { second.tenant_view(&TenantId::parse("t001").unwrap()).await });
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(300), &mut queued)
                .await
                .is_err(),
            "{backend:?}: the read waits for the query in flight"
        );
        // The worker stops, its query task unrun: the queued read is taken up elsewhere.
        tokio::task::spawn_blocking(move || drop(worker)).await.unwrap();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), queued)
            .await
            .expect("the queued read is answered, not left hanging")
            .unwrap();
        assert_view_of(backend, 1, N, answer.unwrap());
    }
}

#[tokio::test]
async fn a_stored_id_that_does_not_parse_is_a_database_error() {
    for backend in db::backends() {
        let (_db, store) = with_tenant(backend).await;
        store.switch(&switch_to(ORG_A, None)).await.unwrap();
        let conn = store.connection();
        conn.execute_unprepared("UPDATE connection SET connected_by = 'not a user id'")
            .await
            .unwrap();
        assert!(
            matches!(
                store.history(&tenant(), 10, None).await,
                Err(StoreError::Database(_))
            ),
            "{backend:?}: a malformed user id"
        );
        conn.execute_unprepared("UPDATE tenant SET home_org = 'not an org'")
            .await
            .unwrap();
        assert!(
            matches!(store.list_tenants().await, Err(StoreError::Database(_))),
            "{backend:?}: a malformed org id"
        );
    }
}
