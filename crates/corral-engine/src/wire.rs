//! Tensors in their wire form, as KServe binary tensors, gRPC raw contents and shared memory
//! carry them: little-endian elements, and `BYTES` elements as Triton writes them, each a
//! 4-byte little-endian length and then its bytes. Every length is checked before anything
//! is allocated.

use crate::{
    datatype::DataType,
    strings::{Strings, StringsView},
    tensor::{Element, SharedData, TensorData, TensorView, bf16, f16},
};

/// Why wire bytes are not a tensor of the shape they came with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{got} bytes but {count} elements of {datatype} need {}", .needed.map_or("more than can be addressed".to_owned(), |n| n.to_string()))]
    Size { got: usize, count: usize, datatype: DataType, needed: Option<usize> },
    #[error(
        "the BYTES elements are not whole: each is a 4-byte little-endian length and then that many bytes, and element {index} runs past the end"
    )]
    Torn { index: usize },
    #[error("{found} BYTES elements but the shape needs {count}")]
    Count { found: usize, count: usize },
}

impl TensorData {
    /// `count` elements of `datatype` from their wire form, every length checked (a hostile
    /// length costs nothing: nothing is allocated before the bytes are known to be there).
    pub fn from_wire(datatype: DataType, bytes: &[u8], count: usize) -> Result<TensorData, WireError> {
        match datatype.size() {
            Some(size) => {
                let needed = count.checked_mul(size);
                if needed != Some(bytes.len()) {
                    return Err(WireError::Size { got: bytes.len(), count, datatype, needed });
                }
                Ok(TensorData::from_le_bytes(datatype, bytes).expect("size checked"))
            }
            None => {
                let starts = crate::strings::starts(bytes).map_err(|index| WireError::Torn { index })?;
                if starts.len() - 1 != count {
                    return Err(WireError::Count { found: starts.len() - 1, count });
                }
                Ok(TensorData::Bytes(Strings::from_wire(bytes.to_vec()).expect("checked above")))
            }
        }
    }

    /// `count` elements of `datatype` from the wire bytes `owner` holds, read in place when
    /// they can be (BYTES records; on a little-endian host, a fixed-size datatype's bytes
    /// aligned for it, BOOL bytes all 0 or 1): the tensor then shares `owner`'s buffer, no
    /// copy. Otherwise, as [`TensorData::from_wire`], copied once. Checked as `from_wire`
    /// checks.
    pub fn from_wire_shared<O>(datatype: DataType, owner: O, count: usize) -> Result<TensorData, WireError>
    where
        O: AsRef<[u8]> + Send + Sync + 'static,
    {
        let owner = std::sync::Arc::new(owner);
        let bytes = (*owner).as_ref();
        let Some(size) = datatype.size() else {
            let starts = crate::strings::starts(bytes).map_err(|index| WireError::Torn { index })?;
            if starts.len() - 1 != count {
                return Err(WireError::Count { found: starts.len() - 1, count });
            }
            let held = std::sync::Arc::new((owner, starts));
            let wire: &[u8] = (*held.0).as_ref();
            // SAFETY: the records are `owner`'s bytes, which nothing writes, and the starts
            // were just read from them; `held` keeps both for as long as the view is used.
            let view = unsafe { StringsView::new(wire, &held.1).detached() };
            return Ok(TensorData::Shared(SharedData::from_parts(TensorView::Bytes(view), held)));
        };
        let needed = count.checked_mul(size);
        if needed != Some(bytes.len()) {
            return Err(WireError::Size { got: bytes.len(), count, datatype, needed });
        }
        fn aligned<T: Element>(bytes: &[u8]) -> Option<&[T]> {
            // SAFETY: every bit pattern is a value of the plain number types this is called
            // with (BOOL is checked by its caller); `align_to` only hands out a middle part
            // that is aligned for `T`.
            let (before, elements, after) = unsafe { bytes.align_to::<T>() };
            (before.is_empty() && after.is_empty()).then_some(elements)
        }
        fn shared<T: Element, O: Send + Sync + 'static>(elements: &[T], owner: &std::sync::Arc<O>) -> TensorData {
            // SAFETY: `elements` points into the buffer of `owner`, which nothing writes and
            // which lives as long as the Arc.
            TensorData::Shared(unsafe { SharedData::new(elements, owner.clone()) })
        }
        if cfg!(target_endian = "little") {
            let in_place = match datatype {
                DataType::Bool if bytes.iter().all(|&b| b <= 1) => {
                    // SAFETY: every byte is 0 or 1, the two values of `bool`, which has size
                    // and alignment 1.
                    let elements = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<bool>(), bytes.len()) };
                    Some(shared(elements, &owner))
                }
                DataType::Bool => None,
                DataType::U8 => Some(shared(bytes, &owner)),
                DataType::I8 => aligned::<i8>(bytes).map(|e| shared(e, &owner)),
                DataType::U16 => aligned::<u16>(bytes).map(|e| shared(e, &owner)),
                DataType::U32 => aligned::<u32>(bytes).map(|e| shared(e, &owner)),
                DataType::U64 => aligned::<u64>(bytes).map(|e| shared(e, &owner)),
                DataType::I16 => aligned::<i16>(bytes).map(|e| shared(e, &owner)),
                DataType::I32 => aligned::<i32>(bytes).map(|e| shared(e, &owner)),
                DataType::I64 => aligned::<i64>(bytes).map(|e| shared(e, &owner)),
                DataType::F16 => aligned::<f16>(bytes).map(|e| shared(e, &owner)),
                DataType::BF16 => aligned::<bf16>(bytes).map(|e| shared(e, &owner)),
                DataType::F32 => aligned::<f32>(bytes).map(|e| shared(e, &owner)),
                DataType::F64 => aligned::<f64>(bytes).map(|e| shared(e, &owner)),
                DataType::Bytes => unreachable!("BYTES has no element size"),
            };
            if let Some(data) = in_place {
                return Ok(data);
            }
        }
        TensorData::from_wire(datatype, bytes, count)
    }

    /// The elements' wire bytes where they already are in wire form: BYTES records, and a
    /// fixed-size datatype on a little-endian host (BOOL is one byte, 0 or 1). `None` for
    /// numbers on a big-endian host (use [`TensorData::to_le_bytes`]).
    pub fn wire_bytes(&self) -> Option<&[u8]> {
        self.view().wire_bytes()
    }

    /// [`TensorData::wire_bytes`] to write into: owned numbers only (not BOOL, whose bytes
    /// must stay 0 or 1, nor shared data, which is read-only).
    pub(crate) fn wire_bytes_mut(&mut self) -> Option<&mut [u8]> {
        fn bytes<T>(elements: &mut [T]) -> Option<&mut [u8]> {
            // SAFETY: every bit pattern is a value of the plain number types this is called
            // with, and the bytes are written only while `elements` is borrowed.
            let bytes =
                unsafe { std::slice::from_raw_parts_mut(elements.as_mut_ptr().cast::<u8>(), size_of_val(elements)) };
            cfg!(target_endian = "little").then_some(bytes)
        }
        match self {
            TensorData::U8(v) => bytes(v),
            TensorData::U16(v) => bytes(v),
            TensorData::U32(v) => bytes(v),
            TensorData::U64(v) => bytes(v),
            TensorData::I8(v) => bytes(v),
            TensorData::I16(v) => bytes(v),
            TensorData::I32(v) => bytes(v),
            TensorData::I64(v) => bytes(v),
            TensorData::F16(v) => bytes(v),
            TensorData::BF16(v) => bytes(v),
            TensorData::F32(v) => bytes(v),
            TensorData::F64(v) => bytes(v),
            TensorData::Bool(_) | TensorData::Bytes(_) | TensorData::Shared(_) => None,
        }
    }

    /// Elements from their wire form (little-endian numbers, length-prefixed BYTES); `None`
    /// when the bytes are not whole elements. BOOL is one byte, non-zero for true.
    pub fn from_le_bytes(datatype: DataType, bytes: &[u8]) -> Option<TensorData> {
        let Some(size) = datatype.size() else { return Strings::from_wire(bytes.to_vec()).map(TensorData::Bytes) };
        if !bytes.len().is_multiple_of(size) {
            return None;
        }
        // Generic over the conversion (not a `fn` pointer) so that it inlines: the loop then
        // compiles to a plain copy, 600 KB in tens of microseconds instead of hundreds.
        fn each<const N: usize, T>(bytes: &[u8], from: impl Fn([u8; N]) -> T) -> Vec<T> {
            bytes.chunks_exact(N).map(|c| from(c.try_into().expect("chunks of N"))).collect()
        }
        Some(match datatype {
            DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DataType::U8 => TensorData::U8(bytes.to_vec()),
            DataType::U16 => TensorData::U16(each(bytes, u16::from_le_bytes)),
            DataType::U32 => TensorData::U32(each(bytes, u32::from_le_bytes)),
            DataType::U64 => TensorData::U64(each(bytes, u64::from_le_bytes)),
            DataType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DataType::I16 => TensorData::I16(each(bytes, i16::from_le_bytes)),
            DataType::I32 => TensorData::I32(each(bytes, i32::from_le_bytes)),
            DataType::I64 => TensorData::I64(each(bytes, i64::from_le_bytes)),
            DataType::F16 => TensorData::F16(each(bytes, f16::from_le_bytes)),
            DataType::BF16 => TensorData::BF16(each(bytes, bf16::from_le_bytes)),
            DataType::F32 => TensorData::F32(each(bytes, f32::from_le_bytes)),
            DataType::F64 => TensorData::F64(each(bytes, f64::from_le_bytes)),
            DataType::Bytes => unreachable!("BYTES has no element size"),
        })
    }

    /// The elements in their wire form: the inverse of [`TensorData::from_le_bytes`].
    pub fn to_le_bytes(&self) -> Vec<u8> {
        fn each<const N: usize, T: Copy>(v: &[T], to: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            v.iter().flat_map(|&x| to(x)).collect()
        }
        match self.view() {
            TensorView::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
            TensorView::U8(v) => v.to_vec(),
            TensorView::U16(v) => each(v, u16::to_le_bytes),
            TensorView::U32(v) => each(v, u32::to_le_bytes),
            TensorView::U64(v) => each(v, u64::to_le_bytes),
            TensorView::I8(v) => v.iter().map(|&x| x as u8).collect(),
            TensorView::I16(v) => each(v, i16::to_le_bytes),
            TensorView::I32(v) => each(v, i32::to_le_bytes),
            TensorView::I64(v) => each(v, i64::to_le_bytes),
            TensorView::F16(v) => each(v, f16::to_le_bytes),
            TensorView::BF16(v) => each(v, bf16::to_le_bytes),
            TensorView::F32(v) => each(v, f32::to_le_bytes),
            TensorView::F64(v) => each(v, f64::to_le_bytes),
            TensorView::Bytes(v) => v.wire().to_vec(),
        }
    }

    /// Every element as f64 (for comparisons in tests and tools, and ranking for
    /// classification); a BYTES element is read as decimal text, NaN when it is not a number.
    pub fn to_f64(&self) -> Vec<f64> {
        match self.view() {
            TensorView::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
            TensorView::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorView::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorView::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorView::U64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorView::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorView::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorView::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorView::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorView::F16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorView::BF16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorView::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorView::F64(v) => v.to_vec(),
            TensorView::Bytes(v) => v
                .iter()
                .map(|e| std::str::from_utf8(e).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(f64::NAN))
                .collect(),
        }
    }
}

impl<'a> TensorView<'a> {
    /// As [`TensorData::wire_bytes`], for as long as the elements are borrowed.
    pub fn wire_bytes(&self) -> Option<&'a [u8]> {
        fn bytes<T>(elements: &[T]) -> Option<&[u8]> {
            // SAFETY: plain numbers and `bool` have no padding; the bytes are read only while
            // `elements` is borrowed.
            let bytes = unsafe { std::slice::from_raw_parts(elements.as_ptr().cast::<u8>(), size_of_val(elements)) };
            cfg!(target_endian = "little").then_some(bytes)
        }
        match *self {
            TensorView::Bool(v) => bytes(v),
            TensorView::U8(v) => bytes(v),
            TensorView::U16(v) => bytes(v),
            TensorView::U32(v) => bytes(v),
            TensorView::U64(v) => bytes(v),
            TensorView::I8(v) => bytes(v),
            TensorView::I16(v) => bytes(v),
            TensorView::I32(v) => bytes(v),
            TensorView::I64(v) => bytes(v),
            TensorView::F16(v) => bytes(v),
            TensorView::BF16(v) => bytes(v),
            TensorView::F32(v) => bytes(v),
            TensorView::F64(v) => bytes(v),
            TensorView::Bytes(v) => Some(v.wire()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn bytes_wire_form_is_length_prefixed_and_checked() {
        let data = TensorData::Bytes(Strings::from_elements([&b"hi"[..], b"", &[0xff, 0]]));
        let wire = data.to_le_bytes();
        assert_eq!(wire, [2, 0, 0, 0, b'h', b'i', 0, 0, 0, 0, 2, 0, 0, 0, 0xff, 0]);
        let errors: Vec<String> = [
            TensorData::from_wire(DataType::Bytes, &wire, 2),
            TensorData::from_wire(DataType::Bytes, &wire[..15], 3),
            TensorData::from_wire(DataType::Bytes, &wire[..2], 1),
            TensorData::from_wire(DataType::Bytes, &[255, 255, 255, 255, 1], 1),
            TensorData::from_wire(DataType::F16, &wire, 3),
            TensorData::from_wire(DataType::F64, &[], usize::MAX),
        ]
        .iter()
        .map(|r| r.as_ref().unwrap_err().to_string())
        .collect();
        expect![[r#"
            3 BYTES elements but the shape needs 2
            the BYTES elements are not whole: each is a 4-byte little-endian length and then that many bytes, and element 2 runs past the end
            the BYTES elements are not whole: each is a 4-byte little-endian length and then that many bytes, and element 0 runs past the end
            the BYTES elements are not whole: each is a 4-byte little-endian length and then that many bytes, and element 0 runs past the end
            16 bytes but 3 elements of FP16 need 6
            0 bytes but 18446744073709551615 elements of FP64 need more than can be addressed"#]].assert_eq(&errors.join("\n"));
        assert_eq!(TensorData::from_wire(DataType::Bytes, &[], 0), Ok(TensorData::Bytes(Strings::default())));
        assert_eq!(
            TensorData::Bytes(Strings::from_elements(["2.5", "x"]))
                .to_f64()
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>(),
            ["2.5", "NaN"]
        );
    }

    #[test]
    fn wire_bytes_are_read_in_place_when_aligned_and_copied_when_not() {
        /// Bytes `at..` of a buffer.
        struct Tail(Vec<u8>, usize);
        impl AsRef<[u8]> for Tail {
            fn as_ref(&self) -> &[u8] {
                &self.0[self.1..]
            }
        }
        let wire = TensorData::F32(vec![1.5, -2.0, 3.25]).to_le_bytes();
        for at in [0, 1] {
            let mut buffer = vec![7u8; at];
            buffer.extend_from_slice(&wire);
            let start = buffer[at..].as_ptr();
            let data = TensorData::from_wire_shared(DataType::F32, Tail(buffer, at), 3).expect("whole elements");
            assert_eq!(data, TensorData::F32(vec![1.5, -2.0, 3.25]), "at {at}");
            let in_place = matches!(data, TensorData::Shared(_));
            assert_eq!(in_place, start.align_offset(4) == 0, "at {at}: read in place exactly when aligned");
            if in_place {
                assert_eq!(data.wire_bytes().map(<[u8]>::as_ptr), Some(start), "the owner's own bytes");
            }
        }
        let bools = TensorData::from_wire_shared(DataType::Bool, vec![0u8, 1, 2], 3).expect("3 elements");
        assert_eq!(bools, TensorData::Bool(vec![false, true, true]), "a byte over 1 is true, and copied");
        assert!(matches!(TensorData::from_wire_shared(DataType::Bool, vec![0u8, 1], 2), Ok(TensorData::Shared(_))));
        assert_eq!(
            TensorData::from_wire_shared(DataType::F32, vec![0u8; 5], 1).unwrap_err().to_string(),
            "5 bytes but 1 elements of FP32 need 4"
        );
    }

    #[test]
    fn every_datatype_round_trips_through_its_wire_form() {
        use crate::{TensorSpec, sample_inputs};
        for datatype in DataType::ALL {
            let data = sample_inputs(&[TensorSpec::new("x", datatype, vec![3])], 1).remove(0).data;
            let bytes = data.to_le_bytes();
            if let Some(size) = datatype.size() {
                assert_eq!(bytes.len(), 3 * size, "{datatype}");
            }
            assert_eq!(TensorData::from_le_bytes(datatype, &bytes).as_ref(), Some(&data), "{datatype}");
            assert_eq!(TensorData::from_wire(datatype, &bytes, 3).as_ref(), Ok(&data), "{datatype}");
            let shared = data.clone().into_shared();
            let parts = [TensorData::Shared(shared.slice(0..1)), TensorData::Shared(shared.slice(1..3))];
            assert_eq!(TensorData::concat(&[&parts[0], &parts[1]]).as_ref(), Some(&data), "{datatype}");
            assert_eq!(TensorData::from_wire_shared(datatype, bytes.clone(), 3).as_ref(), Ok(&data), "{datatype}");
        }
    }
}
