//! The data layer on each backend: the registry, the switch transaction, the history, and the
//! database constraint that keeps one active connection per tenant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cc_connection::domain::{OrgId, TenantId, UserId};
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
            connect_timeout_secs: 10,
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

fn switch_to(org: &str, if_match: Option<Option<i64>>) -> SwitchRequest {
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
        assert_eq!(first.revision, 1);
        let SwitchOutcome::Unchanged(same) = store.switch(&switch_to(ORG_A, None)).await.unwrap() else {
            panic!("{backend:?}: same org is unchanged")
        };
        assert_eq!(same, first);
        let SwitchOutcome::Replaced(second) = store.switch(&switch_to(ORG_B, None)).await.unwrap() else {
            panic!("{backend:?}: other org replaces")
        };
        assert_eq!(
            second.revision, 2,
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
        let err = store.switch(&switch_to(ORG_A, Some(None))).await.unwrap_err();
        assert!(matches!(err, StoreError::PreconditionFailed), "{backend:?}");
        store.switch(&switch_to(ORG_A, None)).await.unwrap();
        let err = store.switch(&switch_to(ORG_B, Some(Some(7)))).await.unwrap_err();
        assert!(matches!(err, StoreError::PreconditionFailed), "{backend:?}");
        let view = store.tenant_view(&tenant()).await.unwrap().unwrap();
        assert_eq!(
            view.tenant.revision, 1,
            "{backend:?}: a refused switch does not bump the revision"
        );
        assert_eq!(view.active.unwrap().org_id.as_str(), ORG_A);
        assert!(matches!(
            store.switch(&switch_to(ORG_B, Some(Some(1)))).await.unwrap(),
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
            .disconnect(&tenant(), &admin(), Utc::now(), Some(Some(1)))
            .await
            .unwrap();
        assert!(!ended.active);
        assert!(
            store
                .tenant_view(&tenant())
                .await
                .unwrap()
                .unwrap()
                .active
                .is_none()
        );
        let SwitchOutcome::Created(again) = store.switch(&switch_to(ORG_A, None)).await.unwrap() else {
            panic!("{backend:?}: reconnecting creates")
        };
        assert_eq!(again.revision, 3, "{backend:?}");
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
        assert_eq!(page.iter().map(|r| r.revision).collect::<Vec<_>>(), [5, 4]);
        let page = store.history(&tenant(), 2, Some(4)).await.unwrap();
        assert_eq!(page.iter().map(|r| r.revision).collect::<Vec<_>>(), [3, 2]);
        let page = store.history(&tenant(), 2, Some(2)).await.unwrap();
        assert_eq!(page.iter().map(|r| r.revision).collect::<Vec<_>>(), [1]);
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
        let revisions: Vec<i64> = history.iter().map(|r| r.revision).collect();
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

        Migrator::down(conn, Some(1)).await.unwrap();
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
        assert_eq!(Migrator::get_pending_migrations(conn).await.unwrap().len(), 1);

        Migrator::up(conn, None).await.unwrap();
        assert!(has_mark().await, "{backend:?}: up adds it again");
        assert_eq!(store.list_tenants().await.unwrap().len(), 1);
        assert!(
            store
                .tenant_view(&tenant())
                .await
                .unwrap()
                .unwrap()
                .active
                .is_some()
        );
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
        assert!(
            store
                .tenant_view(&tenant())
                .await
                .unwrap()
                .unwrap()
                .active
                .is_none()
        );
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
