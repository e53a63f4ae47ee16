//! Triton's model configuration (`inference.ModelConfig`, SPEC §8), read exactly as Triton
//! reads it, for every front end: the runtime reads placement and versions from it, the server
//! batching, sequences and tensors, the Python package what `corral.load` places.
//!
//! - [`schema`]: the messages generated from `proto/model_config.proto` (Triton's schema at a
//!   named commit, field for field), and [`descriptor`], their descriptor.
//! - [`text`]: protobuf's text format against that descriptor, as protobuf's C++ parser reads
//!   it (the parser Triton reads `config.pbtxt` with): [`from_text`], [`read_file`].
//! - [`json`]: protobuf's JSON mapping both ways: a load request's `config` ([`from_json`]) and
//!   the configuration endpoint's answer ([`to_json`], as Triton prints it).
//! - [`validate`]: the checks Triton makes of a configuration once read, in its words.
//!
//! Why a parser of our own rather than `prost-reflect`'s `text-format` feature: Triton's
//! configurations leave out the colon before a list of messages (`input [ { … } ]`, valid text
//! format) which that parser refuses, and its errors are worded its own way; this one takes
//! protobuf's C++ rules and words (a `config.pbtxt` error reads as it reads in Triton's log),
//! on `prost-reflect`'s dynamic messages without its lexer dependency. The dynamic message is
//! then re-read as the generated [`ModelConfig`], which is what every consumer sees.

pub mod json;
pub mod text;
pub mod validate;

use std::{path::Path, sync::OnceLock};

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

pub use json::{JsonError, from_json, to_json};
pub use schema::*;
pub use text::TextError;
pub use validate::validate;

/// The messages of Triton's `model_config.proto`, package `inference`, as `prost` generates them
/// (checked in: `src/generated/inference.rs`; the test `generated_code_is_the_schemas`
/// regenerates it, and `UPDATE_EXPECT=1` writes it after a change of the schema).
#[allow(clippy::all, missing_docs)]
pub mod schema {
    include!("generated/inference.rs");
}

/// The compiled schema, as `protoc` wrote it (a `FileDescriptorSet`; checked in beside the
/// code).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/model_config.bin");

/// The descriptor of `inference.<name>`.
pub fn descriptor(name: &str) -> MessageDescriptor {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    let pool = POOL.get_or_init(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("protoc wrote a descriptor set"));
    pool.get_message_by_name(&format!("inference.{name}")).expect("a message of model_config.proto")
}

/// A `config.pbtxt` that could not be read, in Triton's words.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Triton: filesystem/api.cc, ReadTextProto ("failed to read text proto from PATH"); the
    /// parser's detail, which Triton logs, follows.
    #[error("failed to read text proto from {}: {source}", path.display())]
    Text {
        path: std::path::PathBuf,
        #[source]
        source: TextError,
    },
    #[error("failed to read text proto from {}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `text` read as a `ModelConfig`.
pub fn from_text(text: &str) -> Result<ModelConfig, TextError> {
    let message = text::parse(descriptor("ModelConfig"), text)?;
    Ok(typed(&message))
}

/// The `config.pbtxt` at `path`.
pub fn read_file(path: &Path) -> Result<ModelConfig, ReadError> {
    let text = std::fs::read(path).map_err(|source| ReadError::Io { path: path.to_owned(), source })?;
    // Protobuf reads bytes; a file that is not UTF-8 can only hold its text in strings, whose
    // own check names them, so it is read lossily here.
    from_text(&String::from_utf8_lossy(&text)).map_err(|source| ReadError::Text { path: path.to_owned(), source })
}

/// A dynamic message of `descriptor("ModelConfig")` as the generated type.
fn typed(message: &DynamicMessage) -> ModelConfig {
    message.transcode_to().expect("a message of the same schema transcodes")
}

impl ModelConfig {
    /// The string value of parameter `key` (`parameters { key: … value { string_value: … } }`).
    pub fn parameter(&self, key: &str) -> Option<&str> {
        self.parameters.get(key).map(|p| p.string_value.as_str())
    }

    /// The sequence batcher, when the model is stateful.
    pub fn sequence_batching(&self) -> Option<&ModelSequenceBatching> {
        match &self.scheduling_choice {
            Some(model_config::SchedulingChoice::SequenceBatching(s)) => Some(s),
            _ => None,
        }
    }

    /// The dynamic batcher, when asked for.
    pub fn dynamic_batching(&self) -> Option<&ModelDynamicBatching> {
        match &self.scheduling_choice {
            Some(model_config::SchedulingChoice::DynamicBatching(d)) => Some(d),
            _ => None,
        }
    }

    /// The ensemble's steps, when the model is an ensemble.
    pub fn ensemble_scheduling(&self) -> Option<&ModelEnsembling> {
        match &self.scheduling_choice {
            Some(model_config::SchedulingChoice::EnsembleScheduling(e)) => Some(e),
            _ => None,
        }
    }
}
