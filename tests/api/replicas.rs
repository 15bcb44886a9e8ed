//! Replicas as production runs them: separate `serve` processes sharing nothing but one PostgreSQL
//! database; and how one of them stops (SIGTERM).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cc_connection::dev_ims::world;
use cc_connection::domain::TenantId;
use cc_connection::entity::connection;
use cc_connection::store::{DbOptions, Store};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;

use crate::helpers::{
    TENANT, TestApp, add_demo_tenant, admin_token, assert_history_holds, full_history, integration_token,
    send, send_json, switch_at, wait_for,
};
use crate::process::{LoneReplica, lone_replica, replicas_on_postgres};

const WRITERS: usize = 12;
const SWITCHES_PER_WRITER: usize = 25;
const READERS: usize = 6;
const READS_PER_READER: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn three_serve_processes_on_one_postgres_keep_one_active_row_and_every_acknowledged_switch() {
    // All three start at once on an empty database: their migrations race (under the advisory lock).
    let (ims, db, client, replicas) = replicas_on_postgres(3).await;
    let store = Store::connect(&db.url, &DbOptions::default()).await.unwrap();
    add_demo_tenant(&store).await;

    // Samples the database directly, all through the load.
    let done = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, samples, db) = (done.clone(), samples.clone(), store.connection().clone());
        tokio::spawn(async move {
            let mut most = 0;
            while !done.load(Ordering::Relaxed) {
                let active = connection::Entity::find()
                    .filter(connection::Column::TenantId.eq(TENANT))
                    .filter(connection::Column::Active.eq(true))
                    .count(&db)
                    .await
                    .unwrap();
                most = most.max(active);
                samples.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            most
        })
    };

    let bases: Vec<String> = replicas.iter().map(|r| r.base().to_owned()).collect();
    let path = TestApp::connection_path(TENANT);
    let admin = admin_token(&ims);
    let orgs = [world::ACME_CREATIVE_ORG, world::ACME_DESIGN_ORG];
    let writers = (0..WRITERS).map(|w| {
        let (client, bases, admin) = (client.clone(), bases.clone(), admin.clone());
        tokio::spawn(async move {
            // (revision, org) of each switch this writer had acknowledged, in the order it was.
            let mut acknowledged: Vec<(i64, String)> = Vec::new();
            for i in 0..SWITCHES_PER_WRITER {
                let org = orgs[(w + i) % 2];
                let body = switch_at(&client, &bases[(w + i) % 3], &admin, org).await;
                assert_eq!(body["org_id"], org);
                acknowledged.push((body["revision"].as_i64().unwrap(), org.to_owned()));
            }
            acknowledged
        })
    });
    let writers: Vec<_> = writers.collect();
    let reader_token = integration_token(&ims);
    let readers = (0..READERS).map(|r| {
        let (client, bases, path, token) =
            (client.clone(), bases.clone(), path.clone(), reader_token.clone());
        tokio::spawn(async move {
            let mut answered = 0;
            for i in 0..READS_PER_READER {
                let res = send(
                    client
                        .get(format!("{}{path}", bases[(r + i) % 3]))
                        .bearer_auth(&token),
                )
                .await;
                let status = res.status().as_u16();
                // 404 only until the first switch lands.
                assert!(matches!(status, 200 | 404), "read answered {status}");
                if status == 200 {
                    let body: Value = res.json().await.unwrap();
                    assert!(orgs.iter().any(|o| body["org_id"] == *o), "{body}");
                    answered += 1;
                }
            }
            answered
        })
    });
    let readers: Vec<_> = readers.collect();

    let mut acknowledged = Vec::new();
    for writer in writers {
        let mine = writer.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "one caller's acknowledged switches have increasing revisions: {mine:?}"
        );
        acknowledged.extend(mine);
    }
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let most_active = sampler.await.unwrap();
    assert_eq!(acknowledged.len(), WRITERS * SWITCHES_PER_WRITER);
    assert!(reads > 0, "reads saw the connection");
    assert!(
        samples.load(Ordering::Relaxed) > 20,
        "the database was sampled throughout"
    );
    assert_eq!(most_active, 1, "never more than one active row");

    let history = full_history(&client, &bases[0], &admin).await;
    assert_history_holds(&history, &acknowledged);
    // Every replica now reads the newest acknowledged switch.
    let newest = acknowledged.iter().max_by_key(|(r, _)| *r).unwrap();
    for base in &bases {
        let body = send_json(client.get(format!("{base}{path}")).bearer_auth(&reader_token)).await;
        assert_eq!(body["revision"], newest.0);
        assert_eq!(body["org_id"], newest.1.as_str());
    }
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_and_refuses_new_ones() {
    let LoneReplica {
        ims,
        replica,
        client,
        url,
        dir: _dir,
    } = lone_replica("drain").await;

    // A switch that spends a second waiting on IMS is in flight when SIGTERM arrives.
    ims.faults().set_delay(Duration::from_millis(1_000));
    let ims_before = ims.faults().requests_under("/ims/");
    let in_flight = tokio::spawn({
        let url = format!("{}{}", replica.base(), TestApp::connection_path(TENANT));
        let (client, admin) = (client.clone(), admin_token(&ims));
        async move {
            client
                .put(url)
                .bearer_auth(admin)
                .json(&serde_json::json!({ "org_id": world::ACME_CREATIVE_ORG }))
                .send()
                .await
        }
    });
    wait_for("the switch to reach IMS", Duration::from_secs(5), || async {
        ims.faults().requests_under("/ims/") > ims_before
    })
    .await;
    let terminated = Instant::now();
    replica.terminate();

    // New connections are refused while the old request drains.
    let healthz = format!("{}/healthz", replica.base());
    wait_for(
        "a new connection after SIGTERM to be refused",
        Duration::from_secs(5),
        || async {
            // A fresh client each time: no kept-alive connection from before.
            let refused = reqwest::Client::new().get(&healthz).send().await;
            refused.is_err_and(|e| e.is_connect())
        },
    )
    .await;

    let res = in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(res.status(), 201, "the switch in flight completes");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["org_id"], world::ACME_CREATIVE_ORG);

    // The process exits by itself, cleanly, well within the shutdown bound.
    replica
        .exits_cleanly_within(
            terminated,
            Duration::from_secs(10),
            "serve did not exit within its 10 s shutdown bound",
        )
        .await;

    // And the acknowledged switch is in the database.
    let store = Store::connect(&url, &DbOptions::default()).await.unwrap();
    let view = store
        .tenant_view(&TenantId::parse(TENANT).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        view.active.map(|c| c.org_id.to_string()).as_deref(),
        Some(world::ACME_CREATIVE_ORG)
    );
}
