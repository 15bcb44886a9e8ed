//! Reads are linearizable across replicas (api.md): a read sent after a switch was acknowledged, by
//! any replica, never answers an older revision. Real `serve` processes on one PostgreSQL database,
//! writers switching and readers reading at once, every request timed on one clock.
//!
//! One replica reaches the database over a slow link (answers 20 ms late), as a replica in another
//! zone would: a read query of its that started before a switch committed is still on its way
//! back when the switch, committed through a near replica, is acknowledged and read again. A read
//! that joined such a query would answer the old revision.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cc_connection::dev_ims::world;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::db;
use crate::helpers::{TENANT, TestApp, add_demo_tenant_at, admin_token, integration_token, switch_at};
use crate::process::{ims_and_postgres, serve_replicas};

const REPLICAS: usize = 3;
const WRITERS: usize = 3;
const SWITCHES_PER_WRITER: usize = 30;
/// Readers that read all the time, so every replica always has read queries in flight.
const BACKGROUND_READERS: usize = 24;

/// How late the slow link delivers the database's answers.
const SLOW_LINK: Duration = Duration::from_millis(20);

/// The database at `db_url` reached over a [`slow_link`] that delivers its answers `delay` late.
pub(crate) async fn over_slow_link(db_url: &str, delay: Duration) -> String {
    let url = url::Url::parse(db_url).unwrap();
    let server = format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap()
    );
    let mut far = url.clone();
    far.set_host(Some("127.0.0.1")).unwrap();
    far.set_port(Some(slow_link(server, delay).await)).unwrap();
    far.to_string()
}

/// A TCP proxy to `target` that passes requests at once and delivers the answers `delay` late, in
/// order; returns its port.
pub(crate) async fn slow_link(target: String, delay: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut from_client, mut to_client) = inbound.into_split();
                let (mut from_server, mut to_server) = outbound.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut from_client, &mut to_server).await });
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                        if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                });
                while let Some((due, bytes)) = rx.recv().await {
                    tokio::time::sleep_until(due.into()).await;
                    if to_client.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// One read: when it was sent, when it was answered, and the revision it saw (0: no connection).
#[derive(Debug, Clone, Copy)]
struct Read {
    sent: Instant,
    answered: Instant,
    revision: i64,
    replica: usize,
}

/// One acknowledged switch: when its answer arrived, and its revision.
#[derive(Debug, Clone, Copy)]
struct Ack {
    acknowledged: Instant,
    revision: i64,
}

async fn read(client: &reqwest::Client, base: &str, replica: usize, token: &str) -> Read {
    let url = format!("{base}{}", TestApp::connection_path(TENANT));
    let mut attempt = 0;
    // A pooled keep-alive connection the server closed just as the request went out got no
    // answer at all: such a read says nothing, it is sent again.
    let (sent, res) = loop {
        attempt += 1;
        let sent = Instant::now();
        match client.get(&url).bearer_auth(token).send().await {
            Ok(res) => break (sent, res),
            Err(e) if attempt < 3 && e.is_request() => continue,
            Err(e) => panic!("read failed: {e:?}"),
        }
    };
    let status = res.status().as_u16();
    let revision = match status {
        200 => res.json::<Value>().await.unwrap()["revision"].as_i64().unwrap(),
        // Writers never disconnect: 404 means "before the first switch".
        404 => 0,
        other => panic!("read answered {other}"),
    };
    Read {
        sent,
        answered: Instant::now(),
        revision,
        replica,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn no_read_on_any_replica_answers_older_than_a_switch_acknowledged_before_it_was_sent() {
    db::require_postgres();
    let (ims, db) = ims_and_postgres().await;
    // Replica 0 over the slow link, the others near the database.
    let far = over_slow_link(&db.url, SLOW_LINK).await;
    // Idle connections are dropped before the server's 5 s keep-alive would close them.
    let client = reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    let urls = (0..REPLICAS).map(|r| if r == 0 { far.as_str() } else { &db.url });
    let replicas = serve_replicas(&ims, urls, &client).await;
    add_demo_tenant_at(&db.url).await;
    let bases: Arc<Vec<String>> = Arc::new(replicas.iter().map(|r| r.base().to_owned()).collect());
    let admin = admin_token(&ims);
    let reader = integration_token(&ims);
    let done = Arc::new(AtomicBool::new(false));

    let background: Vec<_> = (0..BACKGROUND_READERS)
        .map(|r| {
            let (client, bases, token, done) = (client.clone(), bases.clone(), reader.clone(), done.clone());
            tokio::spawn(async move {
                let mut reads = Vec::new();
                let mut i = r;
                while !done.load(Ordering::Relaxed) {
                    let replica = i % REPLICAS;
                    reads.push(read(&client, &bases[replica], replica, &token).await);
                    i += 1;
                }
                reads
            })
        })
        .collect();
    // Each writer switches through one replica and, as soon as the switch is acknowledged, reads
    // it back from every replica: the admin who has just switched.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, bases, admin, token) =
                (client.clone(), bases.clone(), admin.clone(), reader.clone());
            tokio::spawn(async move {
                let orgs = [world::ACME_CREATIVE_ORG, world::ACME_DESIGN_ORG];
                let (mut acks, mut reads) = (Vec::new(), Vec::new());
                for i in 0..SWITCHES_PER_WRITER {
                    let org = orgs[(w + i) % 2];
                    let body = switch_at(&client, &bases[(w + i) % REPLICAS], &admin, org).await;
                    acks.push(Ack {
                        acknowledged: Instant::now(),
                        revision: body["revision"].as_i64().unwrap(),
                    });
                    let back = (0..REPLICAS).map(|replica| read(&client, &bases[replica], replica, &token));
                    reads.extend(futures_util::future::join_all(back).await);
                }
                (acks, reads)
            })
        })
        .collect();

    let (mut acks, mut reads) = (Vec::new(), Vec::new());
    for writer in writers {
        let (a, r) = writer.await.unwrap();
        acks.extend(a);
        reads.extend(r);
    }
    done.store(true, Ordering::Relaxed);
    for reader in background {
        reads.extend(reader.await.unwrap());
    }

    // The newest revision acknowledged before each instant, by acknowledgement time.
    acks.sort_by_key(|a| a.acknowledged);
    let mut newest_so_far = Vec::with_capacity(acks.len());
    let mut newest = 0;
    for a in &acks {
        newest = newest.max(a.revision);
        newest_so_far.push((a.acknowledged, newest));
    }
    let newest_before = |t: Instant| {
        let n = newest_so_far.partition_point(|(at, _)| *at < t);
        if n == 0 { 0 } else { newest_so_far[n - 1].1 }
    };
    let stale: Vec<String> = reads
        .iter()
        .filter(|r| r.revision < newest_before(r.sent))
        .map(|r| {
            format!(
                "replica {} answered revision {} in {:?}, but {} was acknowledged before the read was sent",
                r.replica,
                r.revision,
                r.answered - r.sent,
                newest_before(r.sent)
            )
        })
        .collect();
    assert!(
        reads.len() > WRITERS * SWITCHES_PER_WRITER * REPLICAS,
        "the background readers read during the switches"
    );
    eprintln!(
        "{} reads across {REPLICAS} replicas, {} acknowledged switches, {} stale",
        reads.len(),
        acks.len(),
        stale.len()
    );
    assert!(
        stale.is_empty(),
        "{} of {} reads were stale, e.g.:\n{}",
        stale.len(),
        reads.len(),
        stale.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
}
