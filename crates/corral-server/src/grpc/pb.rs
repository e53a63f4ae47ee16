//! Messages and service generated from `proto/inference.proto` (Triton's model configuration
//! comes from `corral-config`; see `build.rs`).
#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("inference");
