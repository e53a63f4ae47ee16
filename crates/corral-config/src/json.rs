//! Protobuf's JSON mapping of `ModelConfig`, both ways, as Triton uses it.
//!
//! In: a load request's `config` parameter (Triton: model_config_utils.cc,
//! `JsonToModelConfig`: `JsonStringToMessage`, unknown fields refused). Field names in proto
//! form (`max_batch_size`) or JSON form (`maxBatchSize`), 64-bit integers as numbers or
//! strings, enums by name or number, maps as objects. Triton also reads enum names in any
//! case; corral reads them as written.
//!
//! Out: the configuration endpoint's answer (Triton: `ModelConfigToJson`): proto field names,
//! every field without presence printed with its default, messages only when set, enums by
//! name, and 64-bit integers as JSON numbers (Triton turns protobuf's strings back into
//! numbers). Object keys come out sorted (serde_json's map).

use prost_reflect::{DeserializeOptions, DynamicMessage, SerializeOptions};

use crate::{ModelConfig, descriptor};

/// A JSON configuration that is not a `ModelConfig`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// `text` (JSON) read as a `ModelConfig`.
pub fn from_json(text: &str) -> Result<ModelConfig, JsonError> {
    let mut reader = serde_json::Deserializer::from_str(text);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let message = DynamicMessage::deserialize_with_options(descriptor("ModelConfig"), &mut reader, &options)
        .map_err(|e| JsonError(e.to_string()))?;
    reader.end().map_err(|e| JsonError(e.to_string()))?;
    Ok(crate::typed(&message))
}

/// `config` as Triton's configuration endpoint prints it.
pub fn to_json(config: &ModelConfig) -> serde_json::Value {
    let mut message = DynamicMessage::new(descriptor("ModelConfig"));
    message.transcode_from(config).expect("a message of the same schema transcodes");
    let options =
        SerializeOptions::new().stringify_64_bit_integers(false).use_proto_field_name(true).skip_default_fields(false);
    message.serialize_with_options(serde_json::value::Serializer, &options).expect("a message always has a JSON form")
}
