//! corral-config's integration tests: the text forms Triton's configurations use, refusals in
//! protobuf's words, and the same texts read by protobuf's own Python parser.

mod generated;
mod peer;
mod schema;
mod text;
mod validate;
