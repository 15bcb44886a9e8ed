//! The change feed (api.md, "Change feed"): `GET /creative-cloud-connections` lists every tenant
//! with a position, `GET /creative-cloud-connections/changes` reads (or waits for, or streams) the
//! changes after a position, in commit order, for integrations only.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cc_connection::dev_ims::world;
use cc_connection::domain::{OrgId, TenantId};
use cc_connection::startup::Application;
use reqwest::Method;
use serde_json::Value;

use crate::common::db::{self, Backend};
use crate::each_backend;
use crate::helpers::{TENANT, TestApp, assert_problem, spawn_app, spawn_app_with, spawn_replica, wait_for};

const CHANGES: &str = "/creative-cloud-connections/changes";
const LIST: &str = "/creative-cloud-connections";

/// Where "another replica" switches: a second app on the same database on PostgreSQL (its commits
/// reach this one through the change channel); on SQLite the same app, as SQLite serves from one
/// process (the in-process wake).
async fn other_replica(app: &TestApp) -> Option<TestApp> {
    match app.backend {
        Backend::Postgres => Some(spawn_replica(app).await),
        Backend::Sqlite => None,
    }
}

/// Registers `tenant` with the demo tenant's home org and administrators.
async fn add_tenant(app: &TestApp, tenant: &str) {
    app.state
        .store
        .add_tenant(
            &TenantId::parse(tenant).unwrap(),
            &OrgId::parse(world::ACME_HOME_ORG).unwrap(),
            &[world::ACME_ADMIN_GROUP.to_owned()],
        )
        .await
        .unwrap();
}

/// Switches `tenant` on the app at `base` to `org` as the demo administrator; asserts it did.
async fn switch(app: &TestApp, base: &str, tenant: &str, org: &str) -> Value {
    let res = app
        .client
        .put(format!("{base}{}", TestApp::connection_path(tenant)))
        .bearer_auth(app.admin_token())
        .json(&serde_json::json!({ "org_id": org }))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert!(
        matches!(status, 200 | 201),
        "switch of {tenant} answered {status}: {body}"
    );
    body
}

/// `GET <base><path>` with the integration token: status and JSON body.
async fn get_json(app: &TestApp, base: &str, path: &str) -> (u16, Value) {
    let res = app
        .client
        .get(format!("{base}{path}"))
        .bearer_auth(app.integration_token())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// One page of changes after `after` read on `base` (asserted 200).
async fn changes_at(app: &TestApp, base: &str, query: &str) -> Value {
    let (status, body) = get_json(app, base, &format!("{CHANGES}{query}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Every change in the feed, read from the start in pages of 3.
async fn whole_feed(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = "0".to_owned();
    loop {
        let page = changes_at(app, &app.address, &format!("?after={after}&limit=3")).await;
        let changes = page["changes"].as_array().unwrap();
        if changes.is_empty() {
            assert_eq!(
                page["position"],
                after.as_str(),
                "an empty page keeps the position"
            );
            return all;
        }
        all.extend(changes.iter().cloned());
        after = page["position"].as_str().unwrap().to_owned();
        assert_eq!(changes.last().unwrap()["position"], after.as_str());
    }
}

/// Asserts `GET <path><query>` with `token` is 400 `invalid-request`, for each of `queries`.
async fn assert_each_query_invalid(app: &TestApp, token: &str, path: &str, queries: &[&str]) {
    for query in queries {
        let res = app
            .call(Method::GET, &format!("{path}{query}"), Some(token))
            .await;
        assert_problem(res, 400, "invalid-request").await;
    }
}

fn position(change: &Value) -> i64 {
    change["position"].as_str().unwrap().parse().unwrap()
}

/// The whole listing, following `next_cursor` with pages of `limit`; every page's position must be
/// the first page's. Calls `between` after each page.
async fn whole_listing(
    app: &TestApp,
    limit: u32,
    mut between: impl AsyncFnMut(),
) -> (String, BTreeMap<String, Value>) {
    let mut tenants = BTreeMap::new();
    let mut cursor: Option<String> = None;
    let mut listing_position: Option<String> = None;
    loop {
        let mut path = format!("{LIST}?limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = get_json(app, &app.address, &path).await;
        assert_eq!(status, 200, "{page}");
        let position = page["position"].as_str().unwrap().to_owned();
        assert_eq!(
            listing_position.get_or_insert_with(|| position.clone()),
            &position,
            "one position for every page of a listing"
        );
        for item in page["connections"].as_array().unwrap() {
            let id = item["tenant_id"].as_str().unwrap().to_owned();
            assert!(tenants.insert(id, item.clone()).is_none(), "each tenant once");
        }
        between().await;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (listing_position.unwrap(), tenants),
        }
    }
}

#[tokio::test]
async fn every_switch_disconnect_and_removal_is_in_the_feed_once_in_order_with_who_and_when() {
    each_backend!(|app| {
        let base = app.address.clone();
        let before = chrono::Utc::now();
        switch(&app, &base, TENANT, world::ACME_CREATIVE_ORG).await;
        switch(&app, &base, TENANT, world::ACME_DESIGN_ORG).await;
        // The same org again changes nothing, and adds nothing to the feed.
        switch(&app, &base, TENANT, world::ACME_DESIGN_ORG).await;
        assert_eq!(app.delete_connection(&app.admin_token()).await.status(), 204);
        switch(&app, &base, TENANT, world::ACME_CREATIVE_ORG).await;
        // The operator removes the tenant from the command line.
        let out = Command::new(env!("CARGO_BIN_EXE_cc-connection"))
            .args(["tenant", "remove", TENANT])
            .env_clear()
            .env("DATABASE_URL", &app.db.url)
            .env("USER", "ops-alice")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        let feed = whole_feed(&app).await;
        let admin = world::ALICE_FEDERATED;
        let expected = [
            ("connected", Some(world::ACME_CREATIVE_ORG), None, admin),
            (
                "switched",
                Some(world::ACME_DESIGN_ORG),
                Some(world::ACME_CREATIVE_ORG),
                admin,
            ),
            ("disconnected", None, Some(world::ACME_DESIGN_ORG), admin),
            ("connected", Some(world::ACME_CREATIVE_ORG), None, admin),
            (
                "tenant-removed",
                None,
                Some(world::ACME_CREATIVE_ORG),
                "cli:ops-alice",
            ),
        ];
        assert_eq!(feed.len(), expected.len(), "{feed:#?}");
        let mut last_revision = 0;
        for (i, (change, (kind, org, previous, by))) in feed.iter().zip(expected).enumerate() {
            assert_eq!(
                position(change),
                i as i64 + 1,
                "positions in commit order: {change}"
            );
            assert_eq!(change["tenant_id"], TENANT);
            assert_eq!(change["kind"], kind, "{change}");
            assert_eq!(change["org_id"].as_str(), org, "{change}");
            assert_eq!(change["org_name"].is_string(), org.is_some(), "{change}");
            assert_eq!(change["previous_org_id"].as_str(), previous, "{change}");
            assert_eq!(change["by"], by, "{change}");
            let at: chrono::DateTime<chrono::Utc> = change["at"].as_str().unwrap().parse().unwrap();
            assert!(
                at >= before - chrono::Duration::seconds(1) && at <= chrono::Utc::now(),
                "{change}"
            );
            let revision = change["revision"].as_i64().unwrap();
            assert!(revision > last_revision, "revisions grow: {change}");
            last_revision = revision;
        }
        // The removed tenant is no longer listed.
        let (_, tenants) = whole_listing(&app, 10, async || {}).await;
        assert!(!tenants.contains_key(TENANT));
    });
}

#[tokio::test]
async fn a_client_that_lists_then_follows_from_the_listing_position_is_exactly_current() {
    each_backend!(|app| {
        let tenants: Vec<String> = (0..12).map(|i| format!("t{i:02}")).collect();
        for t in &tenants {
            add_tenant(&app, t).await;
        }
        for t in tenants.iter().step_by(2) {
            switch(&app, &app.address, t, world::ACME_CREATIVE_ORG).await;
        }
        // Switches go on, on another replica, while the client lists page by page.
        let replica = spawn_replica(&app).await;
        let orgs = [world::ACME_DESIGN_ORG, world::ACME_CREATIVE_ORG];
        let mut n = 0;
        let (position, mut state) = whole_listing(&app, 4, async || {
            for _ in 0..2 {
                let t = &tenants[(n * 5) % tenants.len()];
                switch(&app, &replica.address, t, orgs[n % 2]).await;
                n += 1;
            }
            // And a disconnect.
            let t = &tenants[(n * 3) % tenants.len()];
            let _ = app
                .client
                .delete(format!("{}{}", replica.address, TestApp::connection_path(t)))
                .bearer_auth(app.admin_token())
                .send()
                .await
                .unwrap();
        })
        .await;
        assert!(n >= 6, "switches happened while listing");

        // Follow from the listing's position, applying only higher revisions.
        let mut after = position;
        loop {
            let page = changes_at(&app, &app.address, &format!("?after={after}&limit=2")).await;
            let changes = page["changes"].as_array().unwrap();
            if changes.is_empty() {
                break;
            }
            for change in changes {
                let id = change["tenant_id"].as_str().unwrap();
                let held = state.get(id).and_then(|s| s["revision"].as_i64()).unwrap_or(0);
                if change["revision"].as_i64().unwrap() > held {
                    state.insert(
                        id.to_owned(),
                        serde_json::json!({"org_id": change["org_id"], "revision": change["revision"]}),
                    );
                }
            }
            after = page["position"].as_str().unwrap().to_owned();
        }
        let (_, now) = whole_listing(&app, 1000, async || {}).await;
        assert_eq!(state.len(), now.len());
        for (id, current) in &now {
            let held = &state[id];
            assert_eq!(held["org_id"], current["org_id"], "{id}: {held} vs {current}");
            assert_eq!(held["revision"], current["revision"], "{id}");
        }
    });
}

#[tokio::test]
async fn a_feed_read_started_after_an_acknowledged_switch_on_another_replica_includes_it() {
    each_backend!(|app| {
        let replica = spawn_replica(&app).await;
        for (i, org) in [
            world::ACME_CREATIVE_ORG,
            world::ACME_DESIGN_ORG,
            world::ACME_CREATIVE_ORG,
        ]
        .into_iter()
        .enumerate()
        {
            let acknowledged = switch(&app, &replica.address, TENANT, org).await;
            let page = changes_at(&app, &app.address, &format!("?after={i}")).await;
            let changes = page["changes"].as_array().unwrap();
            assert_eq!(changes.len(), 1, "{page}");
            assert_eq!(changes[0]["revision"], acknowledged["revision"]);
            assert_eq!(changes[0]["org_id"], org);
        }
    });
}

#[tokio::test]
async fn a_long_poll_is_held_then_woken_by_a_switch_on_another_replica() {
    each_backend!(|app| {
        let replica = other_replica(&app).await;
        let replica = replica.as_ref().unwrap_or(&app);
        wait_for("the change channel", Duration::from_secs(10), || {
            std::future::ready(app.state.watchers.is_live())
        })
        .await;
        let request = app
            .client
            .get(app.url(&format!("{CHANGES}?after=0&wait=30")))
            .bearer_auth(app.integration_token());
        let started = std::time::Instant::now();
        let mut poll =
            tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() });
        assert!(
            tokio::time::timeout(Duration::from_millis(500), &mut poll)
                .await
                .is_err(),
            "held while there is no change"
        );
        switch(&app, &replica.address, TENANT, world::ACME_CREATIVE_ORG).await;
        let page = poll.await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "woken, not timed out"
        );
        assert_eq!(page["changes"][0]["kind"], "connected", "{page}");
        assert_eq!(page["position"], "1");

        // Nothing after the head: an empty page after the wait, with the same position.
        let page = changes_at(&app, &app.address, "?after=1&wait=1").await;
        assert_eq!(page, serde_json::json!({"changes": [], "position": "1"}));
    });
}

/// Reads Server-Sent Events off a streaming response.
struct Events {
    res: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<&str>) -> Self {
        let mut req = app
            .client
            .get(app.url(&format!("{CHANGES}{query}")))
            .bearer_auth(app.integration_token())
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = tokio::time::timeout(Duration::from_secs(30), req.send())
            .await
            .expect("the stream's head within 30 s")
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        assert!(res.headers().get("content-encoding").is_none());
        Self {
            res,
            buffer: String::new(),
        }
    }

    /// The next `change` event, past any heartbeat.
    async fn next_change(&mut self) -> Option<(String, Option<String>, Value)> {
        loop {
            let event = self.next().await?;
            if event.0 != "position" {
                return Some(event);
            }
        }
    }

    /// The next event: its name, id and data; None when the stream ends.
    async fn next(&mut self) -> Option<(String, Option<String>, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut id, mut data) = (String::new(), None, Value::Null);
                for line in event.lines() {
                    match line.split_once(": ") {
                        Some(("event", v)) => name = v.to_owned(),
                        Some(("id", v)) => id = Some(v.to_owned()),
                        Some(("data", v)) => data = serde_json::from_str(v).unwrap(),
                        _ => {}
                    }
                }
                return Some((name, id, data));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.res.chunk())
                .await
                .expect("an event within 10 s")
                .ok()??;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test]
async fn server_sent_events_deliver_changes_resume_from_the_last_id_and_beat_with_the_position() {
    for backend in db::backends() {
        let app = spawn_app_with(backend, |c| c.feed_heartbeat_ms = 300).await;
        let replica = other_replica(&app).await;
        let replica = replica.as_ref().unwrap_or(&app);
        switch(&app, &app.address, TENANT, world::ACME_CREATIVE_ORG).await;
        let mut events = Events::open(&app, "?after=0", None).await;
        // Caught up from the database.
        let (name, id, data) = events.next().await.unwrap();
        assert_eq!((name.as_str(), id.as_deref()), ("change", Some("1")));
        assert_eq!(data["kind"], "connected");
        // Then pushed, also for a switch on another replica.
        switch(&app, &replica.address, TENANT, world::ACME_DESIGN_ORG).await;
        let (name, id, data) = events.next_change().await.unwrap();
        assert_eq!((name.as_str(), id.as_deref()), ("change", Some("2")), "{data}");
        assert_eq!(data["kind"], "switched");
        assert_eq!(data["position"], "2");
        // Nothing changes: the heartbeat says where the feed is.
        let (name, id, data) = events.next().await.unwrap();
        assert_eq!((name.as_str(), id), ("position", None));
        assert_eq!(data, serde_json::json!({"position": "2"}));
        drop(events);

        // A client that got 1 resumes after it: Last-Event-ID wins over `after`.
        assert_eq!(app.delete_connection(&app.admin_token()).await.status(), 204);
        let mut events = Events::open(&app, "?after=0", Some("1")).await;
        let ids: Vec<_> = [events.next().await.unwrap(), events.next().await.unwrap()]
            .into_iter()
            .map(|(_, id, _)| id.unwrap())
            .collect();
        assert_eq!(ids, ["2", "3"]);
    }
}

#[tokio::test]
async fn bad_positions_limits_and_waits_are_400_and_anyone_but_an_integration_is_403() {
    each_backend!(|app| {
        switch(&app, &app.address, TENANT, world::ACME_CREATIVE_ORG).await;
        let token = app.integration_token();
        let changes_queries = [
            "?after=abc",
            "?after=-1",
            "?after=1.5",
            "?after=+1",
            "?after=99999999999999999999",
            "?after=2",
            "?after=1000",
            "?limit=0",
            "?limit=1001",
            "?limit=x",
            "?wait=0",
            "?wait=61",
            "?after=1&wait=abc",
        ];
        assert_each_query_invalid(&app, &token, CHANGES, &changes_queries).await;
        for (header, value) in [("Last-Event-ID", "5"), ("Last-Event-ID", "x")] {
            let res = app
                .request(Method::GET, CHANGES, Some(&token))
                .header("Accept", "text/event-stream")
                .header(header, value)
                .send()
                .await
                .unwrap();
            assert_problem(res, 400, "invalid-request").await;
        }
        let list_queries = [
            "?limit=0",
            "?limit=1001",
            "?cursor=nope",
            "?cursor=9:acme-prod",
            "?cursor=0:bad/id",
        ];
        assert_each_query_invalid(&app, &token, LIST, &list_queries).await;
        // The head itself is a position handed out.
        assert_eq!(changes_at(&app, &app.address, "?after=1").await["position"], "1");

        let user = app.user_token(world::BOB_MEMBER, false);
        let admin = app.admin_token();
        let person_of_integration = app.integration_user_token(world::BOB_MEMBER);
        for path in [LIST, CHANGES] {
            for token in [&user, &admin, &person_of_integration] {
                assert_problem(app.call(Method::GET, path, Some(token)).await, 403, "forbidden").await;
            }
            assert_problem(app.call(Method::GET, path, None).await, 401, "invalid-token").await;
        }
    });
}

/// On PostgreSQL, one replica reaches the database over a slow link, so its switches' commits
/// finish long after their other statements; a near replica switches another tenant meanwhile. A
/// position taken at insert would let the near switch commit a higher position first: a reader
/// that saw it would skip the far one for good. Positions here follow commit order: the reader
/// never meets a position at or below one it saw, and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn no_gap_when_commits_finish_in_the_opposite_order_of_their_inserts() {
    db::require_postgres();
    let app = spawn_app(Backend::Postgres).await;
    add_tenant(&app, "near").await;
    let far_url = crate::linearizable::over_slow_link(&app.db.url, Duration::from_millis(150)).await;
    let mut far_config = app.config.clone();
    far_config.database_url = Some(far_url);
    far_config.migrate = false;
    let far = Application::build(far_config).await.unwrap();
    let far_base = format!("http://127.0.0.1:{}", far.port());
    tokio::spawn(far.run_until_stopped());
    crate::helpers::wait_ready(&app.client, &far_base).await;

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (client, base, token, done) = (
            app.client.clone(),
            app.address.clone(),
            app.integration_token(),
            done.clone(),
        );
        tokio::spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            let mut after = 0;
            loop {
                let finished = done.load(Ordering::Acquire);
                let page: Value = client
                    .get(format!("{base}{CHANGES}?after={after}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for change in page["changes"].as_array().unwrap() {
                    let p = position(change);
                    assert!(p > after, "met position {p} after having seen {after}");
                    seen.push(p);
                    after = p;
                }
                if finished {
                    return seen;
                }
            }
        })
    };
    let orgs = [world::ACME_CREATIVE_ORG, world::ACME_DESIGN_ORG];
    for round in 0..6 {
        // The far switch is in its transaction for about a second; near switches keep landing.
        let far_switch = {
            let app_client = app.client.clone();
            let (far_base, token) = (far_base.clone(), app.admin_token());
            tokio::spawn(async move {
                let res = app_client
                    .put(format!("{far_base}{}", TestApp::connection_path(TENANT)))
                    .bearer_auth(token)
                    .json(&serde_json::json!({ "org_id": orgs[round % 2] }))
                    .send()
                    .await
                    .unwrap();
                assert!(res.status().is_success(), "far switch: {}", res.status());
            })
        };
        let mut near = 0;
        while !far_switch.is_finished() {
            switch(&app, &app.address, "near", orgs[near % 2]).await;
            near += 1;
        }
        far_switch.await.unwrap();
    }
    done.store(true, Ordering::Release);
    let seen = reader.await.unwrap();
    let all: Vec<i64> = whole_feed(&app).await.iter().map(position).collect();
    let missed: Vec<_> = all.iter().filter(|p| !seen.contains(p)).collect();
    assert!(missed.is_empty(), "the reader missed {missed:?} of {}", all.len());
    assert_eq!(seen, all, "the reader saw every change, in order");
    assert!(
        all.len() > 12,
        "near switches landed during far ones: {}",
        all.len()
    );
}

/// A subscriber that does not keep up is not buffered for without bound: once it is further behind
/// than the broadcast holds (here 8 changes), it is closed (its stream ends); the client resumes
/// after the last id it got. The subscriber is driven here as the stream's body drives it, so
/// "does not keep up" is exact: it is not polled while the tail publishes.
#[tokio::test]
async fn a_subscriber_that_falls_behind_is_cut_off_and_resumes_from_its_last_id() {
    use cc_connection::feed::Subscriber;
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Alias, Query};
    const BURST: i64 = 200;
    for backend in db::backends() {
        let app = spawn_app_with(backend, |c| c.feed_buffer = 8).await;
        app.connected_by_admin().await;
        let mut subscriber = Subscriber::new(&app.state.hub, 0, Duration::from_secs(600));
        let first = subscriber.next().await.expect("the switch's event");
        assert!(String::from_utf8_lossy(&first).starts_with("id: 1\n"));
        // The test follows the broadcast too, to know when the tail has published the burst.
        let mut published = app.state.hub.subscribe();

        // A burst of changes commits at once (as after a batch of removals): far more than the
        // broadcast holds reach the replica's tail together.
        let conn = sea_orm::Database::connect(&app.db.url).await.unwrap();
        let txn = sea_orm::TransactionTrait::begin(&conn).await.unwrap();
        let mut insert = Query::insert();
        insert.into_table(Alias::new("change")).columns(
            [
                "position",
                "tenant_id",
                "kind",
                "org_id",
                "org_name",
                "revision",
                "at",
                "by",
            ]
            .map(Alias::new),
        );
        for position in 2..=BURST {
            insert
                .values([
                    position.into(),
                    TENANT.into(),
                    "connected".into(),
                    world::ACME_CREATIVE_ORG.into(),
                    "Acme Creative".into(),
                    position.into(),
                    chrono::Utc::now().into(),
                    world::ALICE_FEDERATED.into(),
                ])
                .unwrap();
        }
        txn.execute(&insert).await.unwrap();
        let head = Query::update()
            .table(Alias::new("change_head"))
            .value(Alias::new("position"), BURST)
            .to_owned();
        txn.execute(&head).await.unwrap();
        txn.commit().await.unwrap();
        conn.close().await.unwrap();
        app.state.watchers.recheck_all();
        loop {
            match published.recv().await {
                Ok(frame) if frame.position == BURST => break,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the broadcast closed: {e}"),
            }
        }

        // Polled again, it finds itself further behind than the broadcast holds: it ends.
        let mut last_id = 1;
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = subscriber.next().await {
                let text = String::from_utf8_lossy(&event).into_owned();
                if let Some(id) = text.strip_prefix("id: ").and_then(|t| t.lines().next()) {
                    last_id = id.parse().unwrap();
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the subscriber ends (after id {last_id})");
        assert!(last_id < BURST, "cut off at {last_id} of {BURST}");
        let cut = crate::helpers::metric(&app.metrics().await, "ccc_feed_subscribers_cut_total").unwrap();
        // The application's own count: this subscriber alone.
        assert_eq!(cut, 1.0, "counted as cut off");
        // It resumes after its last id and gets the rest, in order.
        let mut events = Events::open(&app, "", Some(&last_id.to_string())).await;
        for expected in last_id + 1..=BURST {
            let (_, id, _) = events.next_change().await.unwrap();
            assert_eq!(id, Some(expected.to_string()));
        }
    }
}

/// A database connected before the feed existed: the upgrade starts the feed empty at position 0,
/// the listing carries every tenant's state as it stood, and the changes after the upgrade follow
/// it. The migration's `down` removes the feed and `up` brings it back.
#[tokio::test]
async fn after_an_upgrade_the_listing_and_the_feed_bring_a_client_to_the_current_state() {
    use migration::MigratorTrait;
    use sea_orm::ConnectionTrait;
    for backend in db::backends() {
        let db = db::fresh(backend).await;
        let store =
            cc_connection::store::Store::connect(&db.url, &cc_connection::store::DbOptions::default())
                .await
                .unwrap();
        let conn = store.connection().clone();
        // The schema before the feed, with a tenant connected in it.
        migration::Migrator::up(&conn, Some(3)).await.unwrap();
        crate::helpers::add_demo_tenant(&store).await;
        let sql = [
            "UPDATE tenant SET revision = 1".to_owned(),
            format!(
                "INSERT INTO connection (tenant_id, org_id, org_name, connected_by, connected_at, revision, active) \
                 VALUES ('{TENANT}', '{}', 'Acme Creative', '{}', '2026-11-24T03:00:00Z', 1, {})",
                world::ACME_CREATIVE_ORG,
                world::ALICE_FEDERATED,
                if backend == Backend::Sqlite { "1" } else { "true" }
            ),
        ];
        for statement in &sql {
            conn.execute_unprepared(statement).await.unwrap();
        }
        // Upgrade, and back down and up again: `down` is real.
        migration::Migrator::up(&conn, None).await.unwrap();
        // The webhook endpoints' migration, then the feed's.
        migration::Migrator::down(&conn, Some(2)).await.unwrap();
        assert!(
            conn.execute_unprepared("SELECT 1 FROM change").await.is_err(),
            "down drops the feed"
        );
        migration::Migrator::up(&conn, None).await.unwrap();

        assert_eq!(
            store.change_head().await.unwrap(),
            0,
            "the feed starts at the upgrade"
        );
        let listed = store.list_connections(None, 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].revision.get(), 1);
        assert_eq!(
            listed[0].active.as_ref().map(|a| a.0.as_str()),
            Some(world::ACME_CREATIVE_ORG)
        );
        let ended = store
            .disconnect(
                &TenantId::parse(TENANT).unwrap(),
                &cc_connection::domain::UserId::parse(world::ALICE_FEDERATED).unwrap(),
                chrono::Utc::now(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(ended.org_id.as_str(), world::ACME_CREATIVE_ORG);
        let changes = store.changes_after(0, 10).await.unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].position, changes[0].revision.get()),
            (1, 2),
            "after the listing's revision"
        );
        assert_eq!(changes[0].kind, cc_connection::store::ChangeKind::Disconnected);
        store.close().await;
    }
}

/// SIGTERM ends every change feed stream at once, so they do not hold up the drain.
#[tokio::test]
async fn sigterm_ends_the_streams_and_the_drain_is_not_held_up() {
    use crate::process::{LoneReplica, lone_replica};
    let LoneReplica {
        ims,
        replica,
        client,
        dir: _dir,
        ..
    } = lone_replica("feed").await;
    let token = crate::helpers::integration_token(&ims);
    let url = format!("{}{CHANGES}", replica.base());
    let mut stream = client
        .get(&url)
        .bearer_auth(&token)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    wait_for("the stream to subscribe", Duration::from_secs(5), || async {
        crate::helpers::metrics_at(&client, replica.base())
            .await
            .and_then(|m| crate::helpers::metric(&m, "ccc_feed_subscribers"))
            == Some(1.0)
    })
    .await;

    let terminated = std::time::Instant::now();
    replica.terminate();
    let end = tokio::time::timeout(Duration::from_secs(3), async {
        while stream.chunk().await.ok().flatten().is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the stream ended at once");
    assert!(
        terminated.elapsed() < Duration::from_secs(3),
        "{:?}",
        terminated.elapsed()
    );
    replica
        .exits_cleanly_within(terminated, Duration::from_secs(5), "serve exits promptly")
        .await;
}
