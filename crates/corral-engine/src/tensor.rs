//! Tensors: their elements ([`TensorData`], owned or [`SharedData`] in a buffer owned
//! elsewhere), a borrowed view of them ([`TensorView`], what engines read), and a named
//! [`Tensor`] with its shape. Wire forms are `wire.rs`; declared specs and validation
//! `spec.rs`; element types `datatype.rs`.

use std::fmt;

pub use half::{bf16, f16};

use crate::{
    datatype::DataType,
    strings::{Strings, StringsView},
};

/// The elements of a tensor, row-major. Two are equal when their elements are, wherever
/// each is held.
#[derive(Clone, Debug)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Strings),
    /// Elements read in place from a buffer something else owns (a caller's numpy array).
    Shared(SharedData),
}

/// A borrowed look at a tensor's elements, whatever holds them: what engines read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TensorView<'a> {
    Bool(&'a [bool]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    Bytes(StringsView<'a>),
}

/// An element type a tensor can hold.
pub trait Element: Copy + Send + Sync + 'static {
    fn view(elements: &[Self]) -> TensorView<'_>;
}

macro_rules! element {
    ($($t:ty => $variant:ident),*) => {$(
        impl Element for $t {
            fn view(elements: &[$t]) -> TensorView<'_> {
                TensorView::$variant(elements)
            }
        }
    )*};
}
element!(bool => Bool, u8 => U8, u16 => U16, u32 => U32, u64 => U64, i8 => I8, i16 => I16, i32 => I32, i64 => I64, f16 => F16, bf16 => BF16, f32 => F32, f64 => F64);

/// Elements that live in a buffer kept alive by `owner` (say, a numpy array), so a caller's
/// input reaches the engine without a copy. Cloning shares the buffer.
#[derive(Clone)]
pub struct SharedData {
    /// Valid while `_owner` lives (see [`SharedData::new`]).
    view: TensorView<'static>,
    /// Never read: holding it keeps the buffer alive.
    _owner: std::sync::Arc<dyn Send + Sync>,
}

impl SharedData {
    /// Elements at `elements`, kept alive by `owner`.
    ///
    /// # Safety
    ///
    /// `elements` must stay valid, and unwritten, for as long as `owner` (and so any clone of
    /// the result) lives.
    pub unsafe fn new<T: Element>(elements: &[T], owner: std::sync::Arc<dyn Send + Sync>) -> SharedData {
        // SAFETY: the caller keeps the buffer valid and unwritten while `owner` lives, and
        // `view` never hands out the slice for longer than a borrow of this value.
        let elements: &'static [T] = unsafe { std::slice::from_raw_parts(elements.as_ptr(), elements.len()) };
        SharedData { view: T::view(elements), _owner: owner }
    }

    /// `view`, kept alive by `owner`.
    pub(crate) fn from_parts(view: TensorView<'static>, owner: std::sync::Arc<dyn Send + Sync>) -> SharedData {
        SharedData { view, _owner: owner }
    }

    pub fn view(&self) -> TensorView<'_> {
        self.view
    }
}

impl fmt::Debug for SharedData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedData").field(&self.view).finish()
    }
}

impl PartialEq for SharedData {
    fn eq(&self, other: &SharedData) -> bool {
        self.view == other.view
    }
}

impl PartialEq for TensorData {
    fn eq(&self, other: &TensorData) -> bool {
        self.view() == other.view()
    }
}

impl TensorView<'_> {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorView::Bool(_) => DataType::Bool,
            TensorView::U8(_) => DataType::U8,
            TensorView::U16(_) => DataType::U16,
            TensorView::U32(_) => DataType::U32,
            TensorView::U64(_) => DataType::U64,
            TensorView::I8(_) => DataType::I8,
            TensorView::I16(_) => DataType::I16,
            TensorView::I32(_) => DataType::I32,
            TensorView::I64(_) => DataType::I64,
            TensorView::F16(_) => DataType::F16,
            TensorView::BF16(_) => DataType::BF16,
            TensorView::F32(_) => DataType::F32,
            TensorView::F64(_) => DataType::F64,
            TensorView::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorView::Bool(v) => v.len(),
            TensorView::U8(v) => v.len(),
            TensorView::U16(v) => v.len(),
            TensorView::U32(v) => v.len(),
            TensorView::U64(v) => v.len(),
            TensorView::I8(v) => v.len(),
            TensorView::I16(v) => v.len(),
            TensorView::I32(v) => v.len(),
            TensorView::I64(v) => v.len(),
            TensorView::F16(v) => v.len(),
            TensorView::BF16(v) => v.len(),
            TensorView::F32(v) => v.len(),
            TensorView::F64(v) => v.len(),
            TensorView::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TensorData {
    /// The elements, wherever they are held.
    pub fn view(&self) -> TensorView<'_> {
        match self {
            TensorData::Bool(v) => TensorView::Bool(v),
            TensorData::U8(v) => TensorView::U8(v),
            TensorData::U16(v) => TensorView::U16(v),
            TensorData::U32(v) => TensorView::U32(v),
            TensorData::U64(v) => TensorView::U64(v),
            TensorData::I8(v) => TensorView::I8(v),
            TensorData::I16(v) => TensorView::I16(v),
            TensorData::I32(v) => TensorView::I32(v),
            TensorData::I64(v) => TensorView::I64(v),
            TensorData::F16(v) => TensorView::F16(v),
            TensorData::BF16(v) => TensorView::BF16(v),
            TensorData::F32(v) => TensorView::F32(v),
            TensorData::F64(v) => TensorView::F64(v),
            TensorData::Bytes(v) => TensorView::Bytes(v.view()),
            TensorData::Shared(shared) => shared.view(),
        }
    }

    pub fn datatype(&self) -> DataType {
        self.view().datatype()
    }

    pub fn len(&self) -> usize {
        self.view().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements in a buffer of their own: shared data is copied once, owned data moves.
    pub fn into_owned(self) -> TensorData {
        let TensorData::Shared(shared) = self else { return self };
        shared.view().to_owned()
    }

    /// `len` zeros (false, empty strings) of `datatype`.
    pub fn zeros(datatype: DataType, len: usize) -> TensorData {
        match datatype {
            DataType::Bool => TensorData::Bool(vec![false; len]),
            DataType::U8 => TensorData::U8(vec![0; len]),
            DataType::U16 => TensorData::U16(vec![0; len]),
            DataType::U32 => TensorData::U32(vec![0; len]),
            DataType::U64 => TensorData::U64(vec![0; len]),
            DataType::I8 => TensorData::I8(vec![0; len]),
            DataType::I16 => TensorData::I16(vec![0; len]),
            DataType::I32 => TensorData::I32(vec![0; len]),
            DataType::I64 => TensorData::I64(vec![0; len]),
            DataType::F16 => TensorData::F16(vec![f16::ZERO; len]),
            DataType::BF16 => TensorData::BF16(vec![bf16::ZERO; len]),
            DataType::F32 => TensorData::F32(vec![0.0; len]),
            DataType::F64 => TensorData::F64(vec![0.0; len]),
            DataType::Bytes => TensorData::Bytes(std::iter::repeat_n(&[][..], len).collect()),
        }
    }

    /// The elements behind a shared owner, moved there without a copy (shared data stays
    /// where it is), so that clones and [`SharedData::slice`]s share one buffer: a batch's
    /// outputs handed back to each call, an answer's bytes written to a socket.
    pub fn into_shared(self) -> SharedData {
        fn owned<T: Send + Sync + 'static>(
            elements: Vec<T>,
            view: impl Fn(&'static [T]) -> TensorView<'static>,
        ) -> SharedData {
            let owner = std::sync::Arc::new(elements);
            // SAFETY: the Vec's buffer is never written again and lives as long as `owner`.
            let elements: &'static [T] = unsafe { std::slice::from_raw_parts(owner.as_ptr(), owner.len()) };
            SharedData { view: view(elements), _owner: owner }
        }
        match self {
            TensorData::Bool(v) => owned(v, TensorView::Bool),
            TensorData::U8(v) => owned(v, TensorView::U8),
            TensorData::U16(v) => owned(v, TensorView::U16),
            TensorData::U32(v) => owned(v, TensorView::U32),
            TensorData::U64(v) => owned(v, TensorView::U64),
            TensorData::I8(v) => owned(v, TensorView::I8),
            TensorData::I16(v) => owned(v, TensorView::I16),
            TensorData::I32(v) => owned(v, TensorView::I32),
            TensorData::I64(v) => owned(v, TensorView::I64),
            TensorData::F16(v) => owned(v, TensorView::F16),
            TensorData::BF16(v) => owned(v, TensorView::BF16),
            TensorData::F32(v) => owned(v, TensorView::F32),
            TensorData::F64(v) => owned(v, TensorView::F64),
            TensorData::Bytes(v) => {
                let owner = std::sync::Arc::new(v);
                // SAFETY: the elements are in `owner`'s buffers, never written again, which
                // live as long as it.
                let view = unsafe { owner.view().detached() };
                SharedData { view: TensorView::Bytes(view), _owner: owner }
            }
            TensorData::Shared(shared) => shared,
        }
    }

    /// The elements of `parts` one after another, each copied once into the one buffer the
    /// result owns; `None` when they differ in datatype.
    pub fn concat(parts: &[&TensorData]) -> Option<TensorData> {
        let datatype = parts.first()?.datatype();
        if parts.iter().any(|p| p.datatype() != datatype) {
            return None;
        }
        let total = parts.iter().map(|p| p.len()).sum();
        let mut all = TensorData::zeros(datatype, total);
        if let Some(bytes) = all.wire_bytes_mut() {
            let mut at = 0;
            for part in parts {
                let part = part.wire_bytes().expect("a fixed-size datatype has its wire bytes in place");
                bytes[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            return Some(all);
        }
        /// Each part's elements, as `pick` finds them, one after another.
        fn gather<'a, T: Clone + 'a>(
            parts: &[&'a TensorData],
            total: usize,
            pick: impl Fn(TensorView<'a>) -> Option<&'a [T]>,
        ) -> Vec<T> {
            let mut all = Vec::with_capacity(total);
            for part in parts {
                all.extend_from_slice(pick(part.view()).unwrap_or_default());
            }
            all
        }
        match datatype {
            DataType::Bool => {
                let pick = |v| if let TensorView::Bool(v) = v { Some(v) } else { None };
                return Some(TensorData::Bool(gather(parts, total, pick)));
            }
            DataType::Bytes => {
                let views =
                    parts.iter().filter_map(|p| if let TensorView::Bytes(v) = p.view() { Some(v) } else { None });
                return Some(TensorData::Bytes(Strings::concat(views)));
            }
            _ => {}
        }
        // A big-endian host: through the wire form.
        let mut bytes = Vec::new();
        for part in parts {
            bytes.extend_from_slice(&part.to_le_bytes());
        }
        TensorData::from_le_bytes(datatype, &bytes)
    }
}

impl SharedData {
    /// Elements `range`, sharing this buffer (no copy). Panics when `range` runs past the
    /// elements.
    pub fn slice(&self, range: std::ops::Range<usize>) -> SharedData {
        SharedData { view: self.view.slice(range), _owner: self._owner.clone() }
    }
}

impl<'a> TensorView<'a> {
    /// Elements `range`, still borrowed. Panics when `range` runs past the elements.
    pub fn slice(&self, range: std::ops::Range<usize>) -> TensorView<'a> {
        match *self {
            TensorView::Bool(v) => TensorView::Bool(&v[range]),
            TensorView::U8(v) => TensorView::U8(&v[range]),
            TensorView::U16(v) => TensorView::U16(&v[range]),
            TensorView::U32(v) => TensorView::U32(&v[range]),
            TensorView::U64(v) => TensorView::U64(&v[range]),
            TensorView::I8(v) => TensorView::I8(&v[range]),
            TensorView::I16(v) => TensorView::I16(&v[range]),
            TensorView::I32(v) => TensorView::I32(&v[range]),
            TensorView::I64(v) => TensorView::I64(&v[range]),
            TensorView::F16(v) => TensorView::F16(&v[range]),
            TensorView::BF16(v) => TensorView::BF16(&v[range]),
            TensorView::F32(v) => TensorView::F32(&v[range]),
            TensorView::F64(v) => TensorView::F64(&v[range]),
            TensorView::Bytes(v) => TensorView::Bytes(v.slice(range)),
        }
    }

    /// The elements copied into a buffer of their own.
    pub fn to_owned(&self) -> TensorData {
        match *self {
            TensorView::Bool(v) => TensorData::Bool(v.to_vec()),
            TensorView::U8(v) => TensorData::U8(v.to_vec()),
            TensorView::U16(v) => TensorData::U16(v.to_vec()),
            TensorView::U32(v) => TensorData::U32(v.to_vec()),
            TensorView::U64(v) => TensorData::U64(v.to_vec()),
            TensorView::I8(v) => TensorData::I8(v.to_vec()),
            TensorView::I16(v) => TensorData::I16(v.to_vec()),
            TensorView::I32(v) => TensorData::I32(v.to_vec()),
            TensorView::I64(v) => TensorData::I64(v.to_vec()),
            TensorView::F16(v) => TensorData::F16(v.to_vec()),
            TensorView::BF16(v) => TensorData::BF16(v.to_vec()),
            TensorView::F32(v) => TensorData::F32(v.to_vec()),
            TensorView::F64(v) => TensorData::F64(v.to_vec()),
            TensorView::Bytes(v) => TensorData::Bytes(v.to_owned()),
        }
    }
}

/// A named tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor { name: name.into(), shape, data }
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TensorSpec, validate_inputs};

    #[test]
    fn shared_data_reads_the_owners_buffer_and_keeps_it_alive() {
        let buffer = std::sync::Arc::new(vec![1.5f32, -2.0, 3.25]);
        let owner: std::sync::Arc<dyn Send + Sync> = buffer.clone();
        // SAFETY: `buffer` is never written and lives as long as `owner`.
        let shared = TensorData::Shared(unsafe { SharedData::new(&buffer[..], owner) });
        let address = buffer.as_ptr();
        drop(buffer);
        let TensorView::F32(elements) = shared.view() else { panic!("F32 elements") };
        assert_eq!(elements.as_ptr(), address, "read in place, not copied");
        assert_eq!(elements, [1.5, -2.0, 3.25], "still alive after the first owner dropped");
        let owned = TensorData::F32(vec![1.5, -2.0, 3.25]);
        assert_eq!(shared.datatype(), DataType::F32);
        assert_eq!(shared.len(), 3);
        assert_eq!(shared.to_le_bytes(), owned.to_le_bytes());
        assert_eq!(shared.clone(), shared, "clones share the buffer");
        assert_eq!(shared.clone().into_owned(), owned);
        let tensor = Tensor::new("x", vec![1, 3], shared);
        assert!(validate_inputs(&[TensorSpec::new("x", DataType::F32, vec![1, 3])], &[tensor]).is_ok());
    }
}
