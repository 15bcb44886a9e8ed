//! Microbenchmarks (criterion): token verification cold (RSA) and cached, and the switch
//! transaction on SQLite. `cargo bench --bench micro`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use cc_connection::auth::{KeyStore, TokenVerifier};
use cc_connection::dev_ims::{DevIms, TokenSpec, world};
use cc_connection::domain::{OrgId, TenantId, UserId};
use cc_connection::ims::ImsClient;
use cc_connection::store::{DbOptions, Store, SwitchRequest};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn tokens(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ims, keys) = rt.block_on(async {
        let ims = DevIms::start("127.0.0.1:0").await.unwrap();
        let client = ImsClient::new(&ims.url(), Duration::from_secs(2)).unwrap();
        let keys = Arc::new(KeyStore::new(client, None));
        keys.refresh().await.unwrap();
        (ims, keys)
    });
    let clients = [world::INTEGRATION_CLIENT.to_owned()];
    let token = ims.mint(&TokenSpec::service(
        world::INTEGRATION_CLIENT,
        &[world::READ_SCOPE],
    ));
    let mut group = c.benchmark_group("token");
    group.bench_function("verify_cold_rsa", |b| {
        // A new verifier each time: nothing cached, the RSA signature is checked.
        b.to_async(&rt).iter_batched(
            || TokenVerifier::new(keys.clone(), &clients, Some(world::REGION.to_owned())),
            |v| {
                let token = token.clone();
                async move { v.verify(&token).await.unwrap() }
            },
            BatchSize::SmallInput,
        );
    });
    let warm = TokenVerifier::new(keys.clone(), &clients, Some(world::REGION.to_owned()));
    rt.block_on(warm.verify(&token)).unwrap();
    group.bench_function("verify_cached", |b| {
        b.to_async(&rt)
            .iter(|| async { warm.verify(&token).await.unwrap() });
    });
    group.finish();
}

fn switch(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    let store = rt.block_on(async {
        let store = Store::connect(&url, &DbOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let tenant = TenantId::parse("acme-prod").unwrap();
        store
            .add_tenant(&tenant, &OrgId::parse(world::ACME_HOME_ORG).unwrap(), &[])
            .await
            .unwrap();
        store
    });
    let orgs = [
        OrgId::parse(world::ACME_CREATIVE_ORG).unwrap(),
        OrgId::parse(world::ACME_DESIGN_ORG).unwrap(),
    ];
    let mut n = 0usize;
    c.bench_function("switch_transaction_sqlite", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let req = SwitchRequest {
                tenant_id: TenantId::parse("acme-prod").unwrap(),
                org_id: orgs[n % 2].clone(),
                org_name: "Acme".to_owned(),
                by: UserId::parse(world::ALICE_FEDERATED).unwrap(),
                at: chrono::Utc::now(),
                preconditions: cc_connection::domain::Preconditions::NONE,
            };
            let store = store.clone();
            async move { store.switch(&req).await.unwrap() }
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = tokens, switch
}
criterion_main!(benches);
