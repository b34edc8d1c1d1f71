//! Stand-ins for what cannot run on the test machines: real HTTP servers that speak the real
//! wire formats, so production clients run against them unchanged.

pub mod kube;
pub mod presto;
