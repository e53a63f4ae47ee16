//! BYTES elements kept in their wire form ([`Strings`], owned; [`StringsView`], borrowed):
//! one buffer of records, each a 4-byte little-endian length and then that many bytes, as
//! KServe binary tensors, gRPC raw contents and shared memory carry them, plus where each
//! record starts. A request's BYTES input is read where it arrived and an answer's is
//! written once, into the buffer the protocol sends: no element is a buffer of its own.

use std::fmt;

/// BYTES elements in a buffer of their own, in wire form.
#[derive(Clone)]
pub struct Strings {
    wire: Vec<u8>,
    /// Where each record starts, and then the end: one more than there are elements.
    starts: Vec<usize>,
}

/// BYTES elements in wire form, wherever they are held.
#[derive(Clone, Copy)]
pub struct StringsView<'a> {
    wire: &'a [u8],
    /// Where each element's record starts in `wire`, and then where the last ends.
    starts: &'a [usize],
}

impl Default for Strings {
    fn default() -> Strings {
        Strings { wire: Vec::new(), starts: vec![0] }
    }
}

impl Strings {
    /// Room for `count` elements of `bytes` bytes in all.
    pub fn with_capacity(count: usize, bytes: usize) -> Strings {
        let mut starts = Vec::with_capacity(count + 1);
        starts.push(0);
        Strings { wire: Vec::with_capacity(bytes + 4 * count), starts }
    }

    /// The elements of `elements`, each copied once.
    pub fn from_elements<E: AsRef<[u8]>>(elements: impl IntoIterator<Item = E>) -> Strings {
        let mut strings = Strings::default();
        for element in elements {
            strings.push(element.as_ref());
        }
        strings
    }

    /// Elements already in wire form, every length checked: `None` when a record runs past
    /// the end (see `TensorData::from_wire` for the error that says which).
    pub fn from_wire(wire: Vec<u8>) -> Option<Strings> {
        let starts = starts(&wire).ok()?;
        Some(Strings { wire, starts })
    }

    /// Appends one element.
    pub fn push(&mut self, element: &[u8]) {
        self.push_with(element.len(), |bytes| bytes.copy_from_slice(element));
    }

    /// Appends one element of `len` bytes, which `fill` writes in place (an engine copying
    /// its own string straight into the wire form).
    pub fn push_with<E>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> E) -> E {
        let prefix = u32::try_from(len).expect("a BYTES element under 4 GiB").to_le_bytes();
        self.wire.extend_from_slice(&prefix);
        let at = self.wire.len();
        self.wire.resize(at + len, 0);
        let filled = fill(&mut self.wire[at..]);
        self.starts.push(self.wire.len());
        filled
    }

    /// The elements of `parts` one after another, each part's records copied once.
    pub fn concat<'a>(parts: impl IntoIterator<Item = StringsView<'a>> + Clone) -> Strings {
        let count: usize = parts.clone().into_iter().map(|p| p.len()).sum();
        let bytes: usize = parts.clone().into_iter().map(|p| p.wire().len()).sum();
        let mut all = Strings { wire: Vec::with_capacity(bytes), starts: Vec::with_capacity(count + 1) };
        all.starts.push(0);
        for part in parts {
            let (base, first) = (all.wire.len(), part.starts[0]);
            all.wire.extend_from_slice(part.wire());
            all.starts.extend(part.starts[1..].iter().map(|s| s - first + base));
        }
        all
    }

    pub fn view(&self) -> StringsView<'_> {
        StringsView { wire: &self.wire, starts: &self.starts }
    }

    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where each record of `wire` starts, and then its end; each length checked against what
/// is left, so a hostile length allocates nothing. Else the index of the record that runs
/// past the end.
pub(crate) fn starts(wire: &[u8]) -> Result<Vec<usize>, usize> {
    let mut starts = vec![0];
    let mut at = 0;
    while at < wire.len() {
        let torn = starts.len() - 1;
        let prefix = wire.get(at..at + 4).ok_or(torn)?;
        let len = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
        if wire.len() - at - 4 < len {
            return Err(torn);
        }
        at += 4 + len;
        starts.push(at);
    }
    Ok(starts)
}

impl<'a> StringsView<'a> {
    /// A view of `wire` whose records start at `starts` (checked by [`starts`]).
    pub(crate) fn new(wire: &'a [u8], starts: &'a [usize]) -> StringsView<'a> {
        StringsView { wire, starts }
    }

    /// This view for as long as its buffers live, which the caller sees to.
    ///
    /// # Safety
    ///
    /// Both buffers must stay valid, and unwritten, for as long as the result is used.
    pub(crate) unsafe fn detached(self) -> StringsView<'static> {
        // SAFETY: as the caller promised, the buffers outlive the result and are not written.
        unsafe {
            StringsView {
                wire: std::slice::from_raw_parts(self.wire.as_ptr(), self.wire.len()),
                starts: std::slice::from_raw_parts(self.starts.as_ptr(), self.starts.len()),
            }
        }
    }

    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `index`'s bytes. Panics past the last element.
    pub fn get(&self, index: usize) -> &'a [u8] {
        &self.wire[self.starts[index] + 4..self.starts[index + 1]]
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let view = *self;
        (0..view.len()).map(move |i| view.get(i))
    }

    /// Elements `range`, still borrowed. Panics when `range` runs past the elements.
    pub fn slice(&self, range: std::ops::Range<usize>) -> StringsView<'a> {
        StringsView { wire: self.wire, starts: &self.starts[range.start..=range.end] }
    }

    /// The elements' records, one after another: their wire form, in place.
    pub fn wire(&self) -> &'a [u8] {
        &self.wire[self.starts[0]..self.starts[self.len()]]
    }

    /// The elements copied into a buffer of their own, at once.
    pub fn to_owned(&self) -> Strings {
        let base = self.starts[0];
        Strings { wire: self.wire().to_vec(), starts: self.starts.iter().map(|s| s - base).collect() }
    }
}

impl PartialEq for StringsView<'_> {
    fn eq(&self, other: &StringsView<'_>) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl PartialEq for Strings {
    fn eq(&self, other: &Strings) -> bool {
        self.view() == other.view()
    }
}

impl fmt::Debug for StringsView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(String::from_utf8_lossy)).finish()
    }
}

impl fmt::Debug for Strings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view().fmt(f)
    }
}

impl<E: AsRef<[u8]>> FromIterator<E> for Strings {
    fn from_iter<I: IntoIterator<Item = E>>(elements: I) -> Strings {
        Strings::from_elements(elements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_records_read_in_place_and_sliced_without_a_copy() {
        let strings = Strings::from_elements([&b"hi"[..], b"", &[0xff, 0]]);
        assert_eq!(strings.view().wire(), [2, 0, 0, 0, b'h', b'i', 0, 0, 0, 0, 2, 0, 0, 0, 0xff, 0]);
        assert_eq!(strings.len(), 3);
        let tail = strings.view().slice(1..3);
        assert_eq!(tail.iter().collect::<Vec<_>>(), [&b""[..], &[0xff, 0]]);
        assert_eq!(tail.wire().as_ptr(), strings.view().wire()[6..].as_ptr(), "a slice reads the same buffer");
        assert_eq!(tail.to_owned(), Strings::from_elements([&b""[..], &[0xff, 0]]));
        assert_eq!(Strings::from_wire(strings.view().wire().to_vec()), Some(strings.clone()));
        let mut filled = Strings::with_capacity(1, 3);
        filled.push_with(3, |bytes| bytes.copy_from_slice(b"abc"));
        assert_eq!(format!("{filled:?}"), r#"["abc"]"#);
        assert_eq!(Strings::from_wire(vec![5, 0, 0, 0, 1]), None);
        assert_eq!(starts(&[1, 0, 0, 0, 7, 9]), Err(1), "the second record is torn");
    }
}
