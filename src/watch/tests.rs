//! Tests: the registry of held requests, its caps, and the places given back.

use super::*;

#[tokio::test]
async fn the_cap_refuses_and_the_last_watcher_cleans_its_tenant() {
    let caps = WatcherCaps {
        replica: 2,
        ..WatcherCaps::default()
    };
    let watchers = Watchers::new(caps, Feed::Live, &Arc::new(Metrics::new()));
    let t = TenantId::parse("t1").unwrap();
    let a = watchers.watch(&t, "u1").unwrap();
    let b = watchers.watch(&t, "u2").unwrap();
    assert!(watchers.watch(&t, "u3").is_none(), "over the cap");
    assert_eq!((watchers.count(), watchers.tenants()), (2, 1));
    drop(a);
    assert_eq!((watchers.count(), watchers.tenants()), (1, 1));
    drop(b);
    assert_eq!((watchers.count(), watchers.tenants()), (0, 0));
    watchers.shut_down();
    assert!(watchers.watch(&t, "u1").is_none(), "stopping");
}

#[tokio::test]
async fn held_feed_requests_share_the_caps_of_watches_and_give_their_place_back() {
    let caps = WatcherCaps {
        replica: 3,
        caller: 2,
        ..WatcherCaps::default()
    };
    let watchers = Watchers::new(caps, Feed::Live, &Arc::new(Metrics::new()));
    let t = TenantId::parse("t1").unwrap();
    let watch = watchers.watch(&t, "c1").unwrap();
    let held = watchers.hold("c1").unwrap();
    assert!(watchers.hold("c1").is_none(), "over the caller's cap");
    assert!(watchers.watch(&t, "c1").is_none(), "a watch too");
    let other = watchers.hold("c2").unwrap();
    assert!(watchers.hold("c3").is_none(), "over the replica's cap");
    drop(held);
    assert_eq!(watchers.count(), 2);
    assert!(watchers.hold("c1").is_some(), "the place given back");
    drop((watch, other));
    assert_eq!(watchers.count(), 0);
}
