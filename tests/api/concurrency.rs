//! Many replicas switching one tenant at once: exactly one active row, no 5xx, nothing lost.

use cc_connection::dev_ims::world;
use serde_json::Value;

use crate::common::db::backends;
use crate::helpers::{spawn_app, spawn_replica};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_switches_from_three_replicas_leave_one_active_connection() {
    for backend in backends() {
        let first = spawn_app(backend).await;
        let replicas = [spawn_replica(&first).await, spawn_replica(&first).await];
        let apps = [&first, &replicas[0], &replicas[1]];
        let admin = first.admin_token();
        let orgs = [world::ACME_CREATIVE_ORG, world::ACME_DESIGN_ORG];
        let calls = (0..60).map(|i| {
            let app = apps[i % 3];
            let token = admin.clone();
            let org = orgs[(i / 3) % 2];
            async move { app.put_connection(&token, org).await }
        });
        let mut acknowledged = Vec::new();
        for res in futures_util::future::join_all(calls).await {
            let status = res.status().as_u16();
            assert!(
                matches!(status, 200 | 201 | 409),
                "{backend:?}: unexpected {status}"
            );
            if status != 409 {
                let body: Value = res.json().await.unwrap();
                acknowledged.push(body["revision"].as_i64().unwrap());
            }
        }
        let history = first.history_json().await;
        let entries = history["entries"].as_array().unwrap();
        let active = entries.iter().filter(|e| e["active"] == true).count();
        assert_eq!(active, 1, "{backend:?}: exactly one active connection");
        let revisions: Vec<i64> = entries.iter().map(|e| e["revision"].as_i64().unwrap()).collect();
        assert!(
            revisions.windows(2).all(|w| w[0] > w[1]),
            "{backend:?}: history strictly ordered"
        );
        for rev in acknowledged {
            assert!(
                revisions.contains(&rev),
                "{backend:?}: acknowledged revision {rev} is in the history"
            );
        }
        // Every replica reads the same active org.
        let mut seen = Vec::new();
        for app in apps {
            let body = app.connection_json().await;
            seen.push(body["org_id"].clone());
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]));
    }
}
