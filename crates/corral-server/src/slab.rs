//! Where a batching model's REST tensors land: one buffer per forming batch ([`Slabs`]),
//! which each binary body writes its input into, at its own place ([`Slot`]), as the body
//! arrives. Calls whose slots lie side by side in one slab then run as one batch that reads
//! the slab in place ([`Slabs::joined`]): each tensor is copied once on its way in, from the
//! connection into the batch, not into a body of its own and then again into the batch.
//!
//! Only models of one input, a fixed-size datatype and fixed dimensions but the first qualify
//! (a body's tensor bytes are then rows of that input, so its size says how many rows); any
//! other call, or slots not side by side (a call refused on the way, a slow body), is batched
//! by copying, as before. A slab is freed when the last tensor reading it is.

use std::{
    alloc::Layout,
    ptr::NonNull,
    sync::{Arc, Mutex, Weak},
};

use bytes::Bytes;
use corral_engine::{DataType, TensorData, TensorSpec};
use corral_runtime::sync::lock;

use crate::body::ALIGN;

/// One buffer of a forming batch.
struct Slab {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the buffer is plain bytes owned by the slab; every write goes through a `Slot`,
// which owns its range alone, and reads only through frozen slots (see `Slot::freeze`).
unsafe impl Send for Slab {}
// SAFETY: as above: no two threads ever touch the same bytes while one writes them.
unsafe impl Sync for Slab {}

impl Slab {
    fn new(size: usize) -> Option<Slab> {
        let layout = Layout::from_size_align(size.max(1), ALIGN).ok()?;
        // SAFETY: the layout's size is not zero. Zeroed, so every byte is initialised even
        // before its slot writes it.
        let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(Slab { base, layout })
    }

    fn range(&self) -> std::ops::Range<usize> {
        let start = self.base.as_ptr() as usize;
        start..start + self.layout.size()
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: allocated in `Slab::new` with this layout, and freed once.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// A place in a slab that one body writes, in order, and then freezes into its bytes.
pub struct Slot {
    slab: Arc<Slab>,
    start: usize,
    len: usize,
    written: usize,
}

impl Slot {
    /// Appends `data`; false when it runs past the slot (the body is longer than it said).
    pub fn write(&mut self, data: &[u8]) -> bool {
        if data.len() > self.len - self.written {
            return false;
        }
        // SAFETY: `start + written + data.len()` is within the slot, which lies within the
        // slab's buffer and belongs to this slot alone (`Slabs::slot` hands each range out
        // once); `data` is the caller's, so the regions cannot overlap.
        unsafe {
            let at = self.slab.base.as_ptr().add(self.start + self.written);
            std::ptr::copy_nonoverlapping(data.as_ptr(), at, data.len());
        }
        self.written += data.len();
        true
    }

    /// The slot's bytes, once every one was written (else `None`): never written again, and
    /// kept alive (with their slab) as long as the result or a tensor reading it lives.
    pub fn freeze(self) -> Option<Bytes> {
        (self.written == self.len)
            .then(|| Bytes::from_owner(Frozen { slab: self.slab, start: self.start, len: self.len }))
    }
}

/// Written bytes of a slab.
struct Frozen {
    slab: Arc<Slab>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for Frozen {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the range lies within the slab, was written whole before it was frozen,
        // and nothing writes it again; the slab lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.slab.base.as_ptr().add(self.start), self.len) }
    }
}

/// A batching model's slabs: the one forming, and those still read.
pub struct Slabs {
    /// The bytes of one row of the model's one input.
    row_bytes: usize,
    max_rows: usize,
    datatype: DataType,
    /// The slab that new slots go into, and where its free space starts.
    forming: Mutex<Option<(Arc<Slab>, usize)>>,
    /// Every slab made, to find the one a batch's tensors lie in.
    made: Mutex<Vec<Weak<Slab>>>,
}

impl Slabs {
    /// Slabs for a model with these inputs (dimensions with the batch first) when it
    /// qualifies: one input, a fixed-size datatype, fixed dimensions past the first.
    pub fn for_inputs(inputs: &[TensorSpec], max_rows: usize) -> Option<Slabs> {
        let [input] = inputs else { return None };
        let size = input.datatype.size()?;
        let dims = input.shape.get(1..)?;
        let elements = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))?;
        let row_bytes = elements.checked_mul(size).filter(|&n| n > 0)?;
        row_bytes.checked_mul(max_rows)?;
        Some(Slabs {
            row_bytes,
            max_rows,
            datatype: input.datatype,
            forming: Mutex::new(None),
            made: Mutex::new(Vec::new()),
        })
    }

    /// A slot for a body whose tensor bytes are `len`: whole rows, at most a batch of them.
    pub fn slot(&self, len: usize) -> Option<Slot> {
        if len == 0 || !len.is_multiple_of(self.row_bytes) || len / self.row_bytes > self.max_rows {
            return None;
        }
        let mut forming = lock(&self.forming);
        let room = |(slab, next): &(Arc<Slab>, usize)| slab.layout.size() - next >= len;
        if !forming.as_ref().is_some_and(room) {
            let slab = Arc::new(Slab::new(self.row_bytes * self.max_rows)?);
            let mut made = lock(&self.made);
            made.retain(|slab| slab.strong_count() > 0);
            made.push(Arc::downgrade(&slab));
            *forming = Some((slab, 0));
        }
        let (slab, next) = forming.as_mut().expect("made above");
        let slot = Slot { slab: slab.clone(), start: *next, len, written: 0 };
        *next += len;
        Some(slot)
    }

    /// The tensors `parts` as one, read in place, when they lie side by side, in order, in
    /// one slab (each a frozen slot or rows of one); else `None` (to be copied together).
    pub fn joined(&self, parts: &[&TensorData]) -> Option<TensorData> {
        let ranges: Vec<std::ops::Range<usize>> = parts
            .iter()
            .map(|p| p.wire_bytes().filter(|_| p.datatype() == self.datatype).map(|b| b.as_ptr_range()))
            .map(|r| r.map(|r| r.start as usize..r.end as usize))
            .collect::<Option<_>>()?;
        if ranges.windows(2).any(|w| w[0].end != w[1].start) {
            return None;
        }
        let (start, end) = (ranges.first()?.start, ranges.last()?.end);
        let slab = lock(&self.made)
            .iter()
            .filter_map(Weak::upgrade)
            .find(|slab| slab.range().contains(&start) && end <= slab.range().end)?;
        let offset = start - slab.range().start;
        let count = parts.iter().map(|p| p.len()).sum();
        // The parts are frozen slots of this slab (their tensors keep it alive, so it is the
        // live slab holding their addresses), so the whole range was written.
        let whole = Frozen { slab, start: offset, len: end - start };
        TensorData::from_wire_shared(self.datatype, whole, count).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slabs() -> Slabs {
        Slabs::for_inputs(&[TensorSpec::new("x", DataType::F32, vec![-1, 2])], 3).expect("qualifies")
    }

    fn tensor(slot: Slot) -> TensorData {
        let bytes = slot.freeze().expect("written whole");
        let count = bytes.len() / 4;
        TensorData::from_wire_shared(DataType::F32, bytes, count).expect("whole rows")
    }

    fn filled(slabs: &Slabs, values: &[f32]) -> TensorData {
        let mut slot = slabs.slot(values.len() * 4).expect("room");
        assert!(slot.write(&TensorData::F32(values.to_vec()).to_le_bytes()));
        tensor(slot)
    }

    #[test]
    fn slots_side_by_side_join_in_place_and_others_do_not() {
        let slabs = slabs();
        let a = filled(&slabs, &[1.0, 2.0]);
        let b = filled(&slabs, &[3.0, 4.0, 5.0, 6.0]);
        assert!(matches!(a, TensorData::Shared(_)), "read in place");
        let joined = slabs.joined(&[&a, &b]).expect("side by side");
        assert_eq!(joined, TensorData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        assert_eq!(joined.wire_bytes().map(<[u8]>::as_ptr), a.wire_bytes().map(<[u8]>::as_ptr), "not copied");
        assert_eq!(slabs.joined(&[&b, &a]), None, "out of order");
        // The slab is full: the next slot starts another, not beside the first.
        let c = filled(&slabs, &[7.0, 8.0]);
        assert_eq!(slabs.joined(&[&b, &c]), None, "two slabs");
        assert_eq!(slabs.joined(&[&a, &TensorData::F32(vec![3.0, 4.0])]), None, "not in a slab");
    }

    #[test]
    fn a_slot_takes_whole_rows_and_freezes_only_when_written_whole() {
        let slabs = slabs();
        assert!(slabs.slot(4).is_none(), "half a row");
        assert!(slabs.slot(8 * 4).is_none(), "more rows than a batch");
        assert!(slabs.slot(0).is_none());
        let mut slot = slabs.slot(8).expect("a row");
        assert!(slot.write(&[0; 4]));
        assert!(!slot.write(&[0; 5]), "past the slot");
        assert!(slot.freeze().is_none(), "half written");
        for shape in [vec![-1, -1], vec![], vec![-1, 2, 2]] {
            let datatype = if shape.len() == 3 { DataType::Bytes } else { DataType::F32 };
            assert!(Slabs::for_inputs(&[TensorSpec::new("x", datatype, shape)], 2).is_none());
        }
        let two = [TensorSpec::new("x", DataType::F32, vec![-1, 2]), TensorSpec::new("y", DataType::F32, vec![-1, 2])];
        assert!(Slabs::for_inputs(&two, 2).is_none(), "two inputs");
    }
}
