//! The `tether.v1` protocol: generated prost messages and the tonic `AgentControl`
//! client and server. This crate holds generated code only; domain types live in
//! `tether-shared`, and callers convert at the edge.
#![forbid(unsafe_code)]

/// Package `tether.v1`, generated from `proto/tether/v1/agent_control.proto`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("tether.v1");
}

/// The largest message either side accepts on any RPC (4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
