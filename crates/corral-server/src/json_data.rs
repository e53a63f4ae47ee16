//! A REST input's JSON `data` read from its text straight into the tensor's elements: one
//! buffer of the shape's size, allocated once, each number converted as it is read (no tree
//! of JSON values, no list of them), arrays nested as deep as Triton allows.
//!
//! The checks and their order are those of reading the values first and converting them
//! after (`http_server.cc`, `ReadDataFromJson`): nesting too deep or more values than the
//! shape holds (whichever comes first in the text), then fewer values than the shape, then
//! the first value that is not of the datatype.

use std::fmt;

use corral_engine::{DataType, Strings, TensorData, bf16, f16};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, value::RawValue};

/// Triton's `HTTP_MAX_JSON_NESTING_DEPTH`: arrays nested in an input's `data`.
pub const JSON_NESTING_MAX: usize = 100;

/// Why `data` is not the shape's values.
#[derive(Debug, PartialEq)]
pub enum DataError {
    /// Arrays nested [`JSON_NESTING_MAX`] deep.
    TooDeep,
    /// More values than the shape holds.
    TooMany,
    /// Fewer values than the shape holds: `found` of them.
    TooFew { found: usize },
    /// The first value that is not of the datatype, in words.
    Value(String),
    /// Not JSON (cannot happen for a value the header's parse already accepted).
    Syntax(String),
}

/// `count` elements of `datatype` from `data`'s text. The elements are allocated only when
/// the text could hold them (every value takes at least one byte of it), so a shape that
/// names more elements than its text has costs nothing before the count is found short.
pub fn read(data: &RawValue, datatype: DataType, count: usize) -> Result<TensorData, DataError> {
    let room = if count <= data.get().len() { count } else { 0 };
    // BYTES elements are appended as they are read (their sizes are not known before).
    let out = match datatype {
        DataType::Bytes => TensorData::Bytes(Strings::with_capacity(room, 0)),
        _ => TensorData::zeros(datatype, room),
    };
    let mut fill = Fill { out, room, count, len: 0, stop: None, wrong: None };
    let mut reader = serde_json::Deserializer::from_str(data.get());
    let read = Element { fill: &mut fill, depth: 0 }.deserialize(&mut reader);
    if let Some(stop) = fill.stop {
        return Err(stop);
    }
    read.map_err(|e| DataError::Syntax(e.to_string()))?;
    if fill.len != count {
        return Err(DataError::TooFew { found: fill.len });
    }
    match fill.wrong {
        Some(wrong) => Err(DataError::Value(wrong)),
        None => Ok(fill.out),
    }
}

/// The elements as they are read.
struct Fill {
    out: TensorData,
    /// How many elements `out` has room for.
    room: usize,
    count: usize,
    len: usize,
    /// Reading stopped: too deep or too many.
    stop: Option<DataError>,
    /// The first value that did not fit (reading goes on, for the checks that come first).
    wrong: Option<String>,
}

/// One JSON scalar, as read.
enum Scalar<'a> {
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(&'a str),
    /// Anything else (null, an object): never a value of any datatype.
    Other(Value),
}

impl Scalar<'_> {
    fn json(&self) -> Value {
        match self {
            Scalar::Bool(b) => Value::from(*b),
            Scalar::U64(x) => Value::from(*x),
            Scalar::I64(x) => Value::from(*x),
            Scalar::F64(x) => Value::from(*x),
            Scalar::Str(s) => Value::from(*s),
            Scalar::Other(v) => v.clone(),
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::U64(x) => Some(x as f64),
            Scalar::I64(x) => Some(x as f64),
            Scalar::F64(x) => Some(x),
            _ => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match *self {
            Scalar::U64(x) => i64::try_from(x).ok(),
            Scalar::I64(x) => Some(x),
            _ => None,
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match *self {
            Scalar::U64(x) => Some(x),
            Scalar::I64(x) => u64::try_from(x).ok(),
            _ => None,
        }
    }
}

impl Fill {
    fn push(&mut self, scalar: Scalar<'_>) -> Result<(), DataError> {
        if self.len == self.count {
            return Err(DataError::TooMany);
        }
        let i = self.len;
        self.len += 1;
        // With no room (more elements named than the text can hold), only counted.
        if i < self.room
            && self.wrong.is_none()
            && let Err(wrong) = set(&mut self.out, i, &scalar)
        {
            self.wrong = Some(wrong);
        }
        Ok(())
    }
}

/// Element `i` of `out` from `scalar`, in the words of a value that does not fit.
fn set(out: &mut TensorData, i: usize, scalar: &Scalar<'_>) -> Result<(), String> {
    let datatype = out.datatype();
    let not = |what: &str| format!("data[{i}] = {} is not {what}", scalar.json());
    let kind = format!("a {datatype} value");
    let number = || scalar.as_f64().ok_or_else(|| not("a number"));
    let whole = |min: i64, max: i64| scalar.as_i64().filter(|x| (min..=max).contains(x)).ok_or_else(|| not(&kind));
    match out {
        TensorData::Bool(v) => match scalar {
            Scalar::Bool(b) => v[i] = *b,
            _ => return Err(not("true or false")),
        },
        TensorData::U8(v) => v[i] = whole(0, 255)? as u8,
        TensorData::U16(v) => v[i] = whole(0, u16::MAX.into())? as u16,
        TensorData::U32(v) => v[i] = whole(0, u32::MAX.into())? as u32,
        TensorData::U64(v) => v[i] = scalar.as_u64().ok_or_else(|| not(&kind))?,
        TensorData::I8(v) => v[i] = whole(-128, 127)? as i8,
        TensorData::I16(v) => v[i] = whole(i16::MIN.into(), i16::MAX.into())? as i16,
        TensorData::I32(v) => v[i] = whole(i32::MIN.into(), i32::MAX.into())? as i32,
        TensorData::I64(v) => v[i] = whole(i64::MIN, i64::MAX)?,
        TensorData::F32(v) => v[i] = number()? as f32,
        TensorData::F64(v) => v[i] = number()?,
        TensorData::F16(v) => v[i] = f16::from_f64(number()?),
        TensorData::BF16(v) => v[i] = bf16::from_f64(number()?),
        TensorData::Bytes(v) => match scalar {
            Scalar::Str(text) => v.push(text.as_bytes()),
            _ => return Err(not("a string (BYTES elements are JSON strings)")),
        },
        TensorData::Shared(_) => unreachable!("zeros are owned"),
    }
    Ok(())
}

/// One value of `data` at `depth` arrays deep.
struct Element<'f> {
    fill: &'f mut Fill,
    depth: usize,
}

impl Element<'_> {
    /// Records why reading stops, and stops it.
    fn stop<E: de::Error>(self, why: DataError) -> Result<(), E> {
        self.fill.stop.get_or_insert(why);
        Err(E::custom("stopped"))
    }

    fn scalar<E: de::Error>(self, scalar: Scalar<'_>) -> Result<(), E> {
        match self.fill.push(scalar) {
            Ok(()) => Ok(()),
            Err(why) => self.stop(why),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.depth >= JSON_NESTING_MAX {
            return self.stop(DataError::TooDeep);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tensor data")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Scalar::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Scalar::U64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Scalar::I64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Scalar::F64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Scalar::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Scalar::Other(Value::Null))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value = <Value as serde::Deserialize>::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.scalar(Scalar::Other(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        while seq.next_element_seed(Element { fill: &mut *self.fill, depth })?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("JSON")
    }

    #[test]
    fn nested_and_flat_data_read_alike_and_the_checks_keep_their_order() {
        assert_eq!(read(&raw("[[1, 2], [3, 4.5]]"), DataType::F32, 4), Ok(TensorData::F32(vec![1.0, 2.0, 3.0, 4.5])));
        assert_eq!(read(&raw("[1, 2]"), DataType::F32, 4), Err(DataError::TooFew { found: 2 }));
        assert_eq!(read(&raw("[1, 2, 3]"), DataType::F32, 2), Err(DataError::TooMany));
        // A bad value first in the text still loses to too many values after it.
        assert_eq!(read(&raw(r#"["x", 2, 3]"#), DataType::F32, 2), Err(DataError::TooMany));
        assert_eq!(
            read(&raw(r#"[1, {"a": 1}, "x"]"#), DataType::I64, 3),
            Err(DataError::Value(r#"data[1] = {"a":1} is not a INT64 value"#.to_owned()))
        );
        assert_eq!(
            read(&raw("[18446744073709551615, -1]"), DataType::U64, 2),
            Err(DataError::Value("data[1] = -1 is not a UINT64 value".to_owned()))
        );
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(read(&raw(&deep), DataType::F32, 1), Err(DataError::TooDeep));
        let almost = format!("{}1{}", "[".repeat(99), "]".repeat(99));
        assert_eq!(read(&raw(&almost), DataType::F32, 1), Ok(TensorData::F32(vec![1.0])));
        assert_eq!(
            read(&raw(r#"["a\u00e9", "b"]"#), DataType::Bytes, 2),
            Ok(TensorData::Bytes(Strings::from_elements(["aé", "b"])))
        );
        assert_eq!(read(&raw("7"), DataType::U8, 1), Ok(TensorData::U8(vec![7])));
        // A shape far past what the text holds allocates nothing (this would abort otherwise).
        assert_eq!(read(&raw(r#"[1, "x"]"#), DataType::F64, usize::MAX / 4), Err(DataError::TooFew { found: 2 }));
    }
}
