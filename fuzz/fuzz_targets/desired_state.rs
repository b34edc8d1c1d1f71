//! Fuzzes desired-state validation with arbitrary wire documents, as an agent receives
//! them: decoding and validating must never panic, and a document the agent accepts must
//! survive its own round trip unchanged (what the control plane re-encodes from a valid
//! state is valid and means the same).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tether_proto::v1 as pb;
use tether_shared::spec::DesiredState;

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes as a protobuf message, and, since most of those are not one, as the
    // JSON of one cluster and one catalog spec inside an otherwise empty document.
    let docs = [
        pb::DesiredState::decode(data).ok(),
        Some(pb::DesiredState {
            generation: 1,
            clusters: vec![pb::NamedSpec {
                name: "etl".into(),
                spec_json: String::from_utf8_lossy(data).into_owned(),
            }],
            catalogs: vec![pb::NamedSpec {
                name: "lake".into(),
                spec_json: String::from_utf8_lossy(data).into_owned(),
            }],
            presto_access_json: String::from_utf8_lossy(data).into_owned(),
            ..Default::default()
        }),
    ];
    for doc in docs.into_iter().flatten() {
        if let Ok(state) = DesiredState::try_from(doc) {
            let again = DesiredState::try_from(state.to_proto())
                .expect("a valid state re-encoded is valid");
            assert_eq!(again, state, "the round trip changed the state");
        }
    }
});
