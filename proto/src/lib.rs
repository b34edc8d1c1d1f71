//! The `tether.v1` protocol: generated prost messages and the tonic `AgentControl`
//! client and server. This crate holds generated code only; domain types live in
//! `tether-shared`, and callers convert at the edge.
#![forbid(unsafe_code)]

/// Package `tether.v1`, generated from `proto/tether/v1/agent_control.proto`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("tether.v1");
}

/// The encoded `FileDescriptorSet` of package `tether.v1` (decode it with
/// `prost_types::FileDescriptorSet`).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tether_v1_descriptor.bin"));

/// The codec of every RPC: prost, with small per-stream buffers.
///
/// tonic's default codec keeps an 8 KiB encode buffer and an 8 KiB decode buffer for the
/// whole life of every stream. A control plane holds two streams per agent for days, and
/// nearly all their messages (heartbeats, acks, desired state) are a few hundred bytes, so
/// those buffers were about a third of the control plane's memory per idle agent. The
/// buffers grow when a message needs it (telemetry batches).
pub mod codec {
    use std::marker::PhantomData;

    use tonic::codec::{BufferSettings, Codec};
    use tonic_prost::{ProstDecoder, ProstEncoder};

    /// Initial size of a stream's encode and decode buffers.
    pub const BUFFER_BYTES: usize = 512;
    /// An encoder yields to the transport after this many bytes (tonic's default).
    pub const YIELD_THRESHOLD: usize = 32 * 1024;

    /// prost encoding with [`BUFFER_BYTES`] buffers.
    #[derive(Debug, Clone)]
    pub struct TetherCodec<T, U>(PhantomData<(T, U)>);

    impl<T, U> Default for TetherCodec<T, U> {
        fn default() -> Self {
            Self(PhantomData)
        }
    }

    impl<T, U> Codec for TetherCodec<T, U>
    where
        T: prost::Message + Send + 'static,
        U: prost::Message + Default + Send + 'static,
    {
        type Encode = T;
        type Decode = U;
        type Encoder = ProstEncoder<T>;
        type Decoder = ProstDecoder<U>;

        fn encoder(&mut self) -> Self::Encoder {
            ProstEncoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
        }

        fn decoder(&mut self) -> Self::Decoder {
            ProstDecoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
        }
    }
}

/// The largest message either side accepts on any RPC (4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
