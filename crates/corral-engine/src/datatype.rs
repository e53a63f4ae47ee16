//! Element types, named as KServe v2 names them (`FP32`, `BYTES`, …), with their sizes.
//! `FP16` and `BF16` hold `half`'s types.

use std::{fmt, str::FromStr};

/// Element types, named as KServe v2 names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::BF16,
        DataType::F32,
        DataType::F64,
        DataType::Bytes,
    ];

    /// The KServe name: `FP32`, `INT64`, …
    pub fn kserve_name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::BF16 => "BF16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Bytes per element; `None` for BYTES, whose elements have their own lengths.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::I16 | DataType::U16 | DataType::F16 | DataType::BF16 => 2,
            DataType::I32 | DataType::U32 | DataType::F32 => 4,
            DataType::I64 | DataType::U64 | DataType::F64 => 8,
            DataType::Bytes => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kserve_name())
    }
}

impl FromStr for DataType {
    type Err = String;

    fn from_str(name: &str) -> Result<DataType, String> {
        let upper = name.trim().to_ascii_uppercase();
        let upper = upper.strip_prefix("TYPE_").unwrap_or(&upper); // Triton's config spelling
        if upper == "STRING" {
            return Ok(DataType::Bytes); // Triton's config name for BYTES
        }
        DataType::ALL.into_iter().find(|d| d.kserve_name() == upper).ok_or_else(|| {
            let names: Vec<&str> = DataType::ALL.iter().map(|d| d.kserve_name()).collect();
            format!("unknown datatype `{name}`; use one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatype_names() {
        assert_eq!("fp32".parse::<DataType>(), Ok(DataType::F32));
        assert_eq!("TYPE_INT64".parse::<DataType>(), Ok(DataType::I64));
        assert_eq!(
            "float".parse::<DataType>().unwrap_err(),
            "unknown datatype `float`; use one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, BYTES"
        );
        assert_eq!("TYPE_UINT64".parse::<DataType>(), Ok(DataType::U64));
        assert_eq!("TYPE_STRING".parse::<DataType>(), Ok(DataType::Bytes));
    }
}
