//! End-to-end test support for Tether, and `tether-sandbox`.
//!
//! [`harness`] starts the real binaries on loopback (ports picked by the OS, temp dirs,
//! processes killed on drop), talks to the REST API, and waits with [`harness::eventually`]
//! rather than bare sleeps. The tests themselves live in `tests/tests/`.
#![forbid(unsafe_code)]

pub mod bench;
pub mod harness;
pub mod sandbox;
pub mod standins;
