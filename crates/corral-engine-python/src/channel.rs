//! The stub's channel: frames over a Unix socket, each a 4-byte little-endian header length,
//! a JSON header, then the bytes of the tensors the header lists (`tensors[].bytes`), back to
//! back: numbers little-endian, BYTES elements each a 4-byte length and its bytes.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
};

use corral_engine::{DataType, Tensor, TensorData};
use serde_json::{Value, json};

/// The largest header read (a header lists tensors, it never holds their bytes).
const HEADER_MAX: usize = 16 << 20;

/// Writes `header` with `tensors` listed in it and their bytes after it.
pub fn write(stream: &mut UnixStream, mut header: Value, tensors: &[Tensor]) -> std::io::Result<()> {
    let owned: Vec<Option<Vec<u8>>> =
        tensors.iter().map(|t| t.data.wire_bytes().is_none().then(|| t.data.to_le_bytes())).collect();
    let bytes: Vec<&[u8]> = tensors
        .iter()
        .zip(&owned)
        .map(|(t, owned)| owned.as_deref().or_else(|| t.data.wire_bytes()).unwrap_or_default())
        .collect();
    if !tensors.is_empty() {
        let listed: Vec<Value> = tensors
            .iter()
            .zip(&bytes)
            .map(|(t, b)| json!({"name": t.name, "datatype": t.datatype().kserve_name(), "shape": t.shape, "bytes": b.len()}))
            .collect();
        header["tensors"] = Value::Array(listed);
    }
    let text = header.to_string();
    let mut head = Vec::with_capacity(4 + text.len());
    head.extend_from_slice(&(text.len() as u32).to_le_bytes());
    head.extend_from_slice(text.as_bytes());
    stream.write_all(&head)?;
    for b in bytes {
        stream.write_all(b)?;
    }
    Ok(())
}

/// Reads one frame: its header and the tensors it lists.
pub fn read(stream: &mut UnixStream) -> std::io::Result<(Value, Vec<Tensor>)> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = u32::from_le_bytes(size) as usize;
    if size > HEADER_MAX {
        return Err(invalid(format!("a header of {size} bytes")));
    }
    let mut text = vec![0; size];
    stream.read_exact(&mut text)?;
    let header: Value =
        serde_json::from_slice(&text).map_err(|e| invalid(format!("a header that is not JSON: {e}")))?;
    let mut tensors = Vec::new();
    for listed in header.get("tensors").and_then(Value::as_array).into_iter().flatten() {
        let name = listed["name"].as_str().unwrap_or_default();
        let datatype_name = listed["datatype"].as_str().unwrap_or_default();
        let datatype = DataType::ALL
            .into_iter()
            .find(|d| d.kserve_name() == datatype_name)
            .ok_or_else(|| invalid(format!("output '{name}': datatype {datatype_name}")))?;
        let shape: Vec<usize> = listed["shape"]
            .as_array()
            .map(|dims| dims.iter().filter_map(|d| d.as_u64().map(|d| d as usize)).collect())
            .unwrap_or_default();
        let len = listed["bytes"].as_u64().unwrap_or(0) as usize;
        let mut bytes = vec![0; len];
        stream.read_exact(&mut bytes)?;
        let count = shape.iter().product();
        let data =
            TensorData::from_wire(datatype, &bytes, count).map_err(|e| invalid(format!("output '{name}': {e}")))?;
        tensors.push(Tensor::new(name, shape, data));
    }
    Ok((header, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_numbers_and_strings_both_ways() {
        let (mut a, mut b) = UnixStream::pair().expect("a socket pair");
        let tensors = vec![
            Tensor::new("x", vec![2, 2], TensorData::F32(vec![1.0, 2.0, 3.0, 4.5])),
            Tensor::new("s", vec![2], TensorData::Bytes(corral_engine::Strings::from_elements([&b"ab"[..], b""]))),
            Tensor::new("flag", vec![1], TensorData::Bool(vec![true])),
        ];
        write(&mut a, json!({"op": "execute"}), &tensors).expect("written");
        let (header, back) = read(&mut b).expect("read");
        assert_eq!(header["op"], "execute");
        assert_eq!(back, tensors);
    }
}
