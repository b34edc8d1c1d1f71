//! SecretStore: sealed secrets, stored once or replaced.

use std::sync::Arc;

use tether_control_plane::store::Store;

/// Bytes that are not text: NUL, invalid UTF-8, every byte value.
fn sealed(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect()
}

/// A secret is stored as given (any bytes); put-if-absent keeps the first and returns it,
/// also to concurrent callers; put replaces.
pub async fn secrets_are_stored_once_or_replaced(store: Arc<dyn Store>) {
    assert_eq!(store.get_secret("ca-key").await.expect("get"), None);
    let first = sealed(1, 4096);
    assert!(
        std::str::from_utf8(&first).is_err(),
        "the fixture is not text"
    );
    assert_eq!(
        store
            .put_secret_if_absent("ca-key", &first, 10)
            .await
            .expect("put if absent"),
        first
    );
    assert_eq!(
        store.get_secret("ca-key").await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(
        store
            .put_secret_if_absent("ca-key", &sealed(2, 100), 20)
            .await
            .expect("put if absent again"),
        first,
        "the one stored first"
    );
    assert_eq!(
        store.get_secret("ca-key").await.expect("get"),
        Some(first.clone())
    );

    let rotated = sealed(3, 70_000);
    store
        .put_secret("ca-key", &rotated, 30)
        .await
        .expect("rotate");
    assert_eq!(
        store.get_secret("ca-key").await.expect("get"),
        Some(rotated)
    );
    store
        .put_secret("ticket-key", &[0, 0, 255], 40)
        .await
        .expect("put new");
    assert_eq!(
        store.get_secret("ticket-key").await.expect("get"),
        Some(vec![0, 0, 255])
    );
    assert_eq!(store.get_secret("Ticket-key").await.expect("get"), None);

    // Replicas starting together: every one gets the same secret back.
    let tasks: Vec<_> = (0..4u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put_secret_if_absent("session-key", &sealed(10 + i, 64), 50)
                    .await
                    .expect("put if absent")
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.expect("task"));
    }
    let stored = store
        .get_secret("session-key")
        .await
        .expect("get")
        .expect("stored");
    assert!(
        got.iter().all(|g| *g == stored),
        "all callers got the stored one"
    );
    assert!((0..4u8).any(|i| sealed(10 + i, 64) == stored));
}
