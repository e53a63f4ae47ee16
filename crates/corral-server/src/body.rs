//! Request and answer bodies as tensors need them: a request body collected once into a
//! buffer where its binary tensors land aligned for their elements (so they are read in
//! place, not copied again), and an answer sent as the frames it is made of (its JSON header,
//! then each tensor's bytes where they already are), which hyper writes with vectored writes.

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Where a binary part starts is aligned to this many bytes: the widest element (8) and
/// then some, as ONNX Runtime's own buffers are.
pub const ALIGN: usize = 64;

/// The body over `limit` bytes.
#[derive(Debug)]
pub struct TooLarge;

/// Collects `body` (at most `limit` bytes) into one buffer. With its length known, the
/// buffer is allocated once and placed so that byte `aligned_at` (where a binary request's
/// tensors begin: its `Inference-Header-Content-Length`) falls on an [`ALIGN`] boundary; each
/// received frame is copied once, into place.
pub async fn collect(
    mut body: Body,
    limit: usize,
    length: Option<usize>,
    aligned_at: usize,
) -> Result<Bytes, TooLarge> {
    use http_body::Body as _;
    let mut buffer = Vec::new();
    let mut pad = 0;
    if let Some(length) = length.filter(|&n| n <= limit) {
        buffer.reserve_exact(length + ALIGN);
        let at = buffer.as_ptr() as usize + aligned_at.min(length);
        pad = at.next_multiple_of(ALIGN) - at;
        buffer.resize(pad, 0);
    }
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(frame) = frame else { return Err(TooLarge) };
        let Ok(data) = frame.into_data() else { continue };
        if buffer.len() - pad + data.len() > limit {
            return Err(TooLarge);
        }
        buffer.extend_from_slice(&data);
    }
    Ok(Bytes::from(buffer).slice(pad..))
}

/// Collects a binary request whose tensors go elsewhere (a batch's buffer: `slab.rs`): its
/// first `header_len` bytes, the JSON header, into a buffer of their own (returned), and the
/// rest, each received frame copied once, straight to `tensors`, which says false when they
/// run past their room.
pub async fn collect_into(
    mut body: Body,
    header_len: usize,
    mut tensors: impl FnMut(&[u8]) -> bool,
) -> Result<Bytes, TooLarge> {
    use http_body::Body as _;
    let mut header = Vec::with_capacity(header_len);
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(frame) = frame else { return Err(TooLarge) };
        let Ok(data) = frame.into_data() else { continue };
        let into_header = (header_len - header.len()).min(data.len());
        header.extend_from_slice(&data[..into_header]);
        if !tensors(&data[into_header..]) {
            return Err(TooLarge);
        }
    }
    Ok(Bytes::from(header))
}

/// Reads and drops what is left of `body`, up to `most` bytes, so that an answer given before
/// it (a body over the limit) reaches a client still sending it, as Triton's does (its HTTP
/// server reads a request whole before answering); past `most` the connection is dropped.
pub async fn drain(mut body: Body, most: usize) {
    use http_body::Body as _;
    let mut read = 0usize;
    while let Some(Ok(frame)) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        read += frame.data_ref().map_or(0, Bytes::len);
        if read > most {
            return;
        }
    }
}

/// An answer's body: its parts in order, each sent as it is (no copy into one buffer).
pub struct Frames {
    parts: VecDeque<Bytes>,
    left: u64,
}

impl Frames {
    pub fn new(parts: impl IntoIterator<Item = Bytes>) -> Frames {
        let parts: VecDeque<Bytes> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        let left = parts.iter().map(|p| p.len() as u64).sum();
        Frames { parts, left }
    }

    pub fn into_body(self) -> Body {
        Body::new(self)
    }
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        Poll::Ready(this.parts.pop_front().map(|part| {
            this.left -= part.len() as u64;
            Ok(Frame::data(part))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// A tensor's wire bytes as a frame: in place, sharing the tensor's buffer, where the
/// elements already are in wire form (shared data: see [`corral_engine::TensorData::into_shared`]),
/// else written out once.
pub fn tensor_bytes(data: &corral_engine::TensorData) -> Bytes {
    struct Wire(corral_engine::SharedData);
    impl AsRef<[u8]> for Wire {
        fn as_ref(&self) -> &[u8] {
            self.0.view().wire_bytes().expect("checked to have its wire bytes in place")
        }
    }
    match data {
        corral_engine::TensorData::Shared(shared) if data.wire_bytes().is_some() => {
            Bytes::from_owner(Wire(shared.clone()))
        }
        _ => Bytes::from(data.to_le_bytes()),
    }
}

/// Moves each tensor's elements behind a shared owner (no copy), so that answers and
/// batches hand out views of them: see [`tensor_bytes`].
pub fn share(tensors: &mut [corral_engine::Tensor]) {
    for tensor in tensors {
        let data = std::mem::replace(&mut tensor.data, corral_engine::TensorData::U8(Vec::new()));
        tensor.data = corral_engine::TensorData::Shared(data.into_shared());
    }
}
