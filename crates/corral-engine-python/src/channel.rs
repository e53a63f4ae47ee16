//! The stub's channel: frames over a Unix socket, each a 4-byte little-endian header length,
//! a JSON header, then the bytes of the tensors the header lists (`tensors[].bytes`), back to
//! back: numbers little-endian, BYTES elements each a 4-byte length and its bytes.
//!
//! A tensor may instead lie in the stub's shared buffer ([`Shared`]: its entry says `at`, the
//! offset, and no bytes follow on the socket): an `execute`'s numeric inputs in the buffer's
//! first half, which the server writes; the stub writes the second, its outputs in the third
//! quarter and its BLS calls' inputs in the last (a ring), so neither side overwrites what the
//! other reads. An output that is an input handed on unchanged is named where the input lies.
//! The server copies a tensor out as it reads the frame naming it.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
};

use corral_engine::{DataType, Tensor, TensorData};
use serde_json::{Value, json};

/// The largest header read (a header lists tensors, it never holds their bytes).
const HEADER_MAX: usize = 16 << 20;

/// The stub's shared buffer: a memfd both processes map, of a fixed size and sealed against
/// shrinking and growing, so that a stub can never make the server's mapping fault (SIGBUS);
/// the server only copies in and out of it through raw pointers, never holding a reference to
/// bytes the stub may be writing.
pub struct Shared {
    fd: std::os::fd::OwnedFd,
    at: std::ptr::NonNull<u8>,
}

// SAFETY: the mapping is owned by this value alone and only read or written through `&mut`.
unsafe impl Send for Shared {}

impl Shared {
    /// 64 MiB: half for an execute's inputs, half for its outputs (pages are only taken as
    /// they are touched); a tensor that does not fit crosses the socket.
    pub const SIZE: usize = 64 << 20;
    const HALF: usize = Shared::SIZE / 2;

    pub fn new() -> std::io::Result<Shared> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let last = std::io::Error::last_os_error;
        // SAFETY: a valid C string; the flags are memfd_create's.
        let raw = unsafe { libc::memfd_create(c"corral-python".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if raw < 0 {
            return Err(last());
        }
        // SAFETY: `raw` is a descriptor just opened and owned by nobody else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain calls on the descriptor owned here.
        unsafe {
            if libc::ftruncate(fd.as_raw_fd(), Shared::SIZE as libc::off_t) != 0 {
                return Err(last());
            }
            let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
            if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) != 0 {
                return Err(last());
            }
        }
        // SAFETY: a shared mapping of the whole (sealed, fixed-size) file.
        let mapped = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Shared::SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(last());
        }
        let at = std::ptr::NonNull::new(mapped.cast::<u8>()).ok_or_else(last)?;
        Ok(Shared { fd, at })
    }

    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    /// Copies `bytes` in at `offset` (within the buffer: the caller checked).
    fn put(&mut self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= Shared::SIZE, "inside the buffer");
        // SAFETY: the range is inside the mapping (asserted), which lives as long as `self`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.at.as_ptr().add(offset), bytes.len()) };
    }

    /// A copy of the `len` bytes at `offset`; `None` outside the buffer. Mostly the stub's
    /// half; an output that is one of the execute's inputs, handed on, is named in the first.
    fn take(&self, offset: usize, len: usize) -> Option<Vec<u8>> {
        if offset.checked_add(len)? > Shared::SIZE {
            return None;
        }
        let mut copy = Vec::with_capacity(len);
        // SAFETY: the range is inside the mapping (checked), which is never shrunk (sealed);
        // `copy` has room for `len` bytes, all written before its length is set.
        unsafe {
            std::ptr::copy_nonoverlapping(self.at.as_ptr().add(offset), copy.as_mut_ptr(), len);
            copy.set_len(len);
        }
        Some(copy)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.at.as_ptr().cast(), Shared::SIZE) };
    }
}

/// Writes `header` with `tensors` listed in it and their bytes after it (numeric tensors into
/// `shared`'s inputs half instead, while they fit).
pub fn write_with(
    stream: &mut UnixStream,
    header: Value,
    tensors: &[Tensor],
    shared: Option<&mut Shared>,
) -> std::io::Result<()> {
    let owned = owned_bytes(tensors);
    let bytes = tensor_bytes(tensors, &owned);
    let mut placed = vec![None; tensors.len()];
    let mut next = 0usize;
    if let Some(shared) = shared {
        for ((t, b), at) in tensors.iter().zip(&bytes).zip(&mut placed) {
            if t.datatype().size().is_some() && next + b.len() <= Shared::HALF {
                shared.put(next, b);
                *at = Some(next);
                next = (next + b.len()).next_multiple_of(64);
            }
        }
    }
    stream.write_all(&head(header, tensors, &bytes, &placed))?;
    for (b, at) in bytes.iter().zip(&placed) {
        if at.is_none() {
            stream.write_all(b)?;
        }
    }
    Ok(())
}

/// [`write_with`] all on the socket.
pub fn write(stream: &mut UnixStream, header: Value, tensors: &[Tensor]) -> std::io::Result<()> {
    write_with(stream, header, tensors, None)
}

/// The whole frame [`write`] would send, when it is at most `max` bytes long.
pub fn small_frame(header: Value, tensors: &[Tensor], max: usize) -> Option<Vec<u8>> {
    let owned = owned_bytes(tensors);
    let bytes = tensor_bytes(tensors, &owned);
    if bytes.iter().map(|b| b.len()).sum::<usize>() > max {
        return None;
    }
    let mut frame = head(header, tensors, &bytes, &vec![None; tensors.len()]);
    for b in &bytes {
        frame.extend_from_slice(b);
    }
    (frame.len() <= max).then_some(frame)
}

/// What [`send_now`] did.
pub enum Sent {
    All,
    /// Nothing was written: the socket's buffer is full.
    WouldBlock,
    /// The stub is gone.
    Failed,
}

/// Sends `frame` without blocking. A frame of a few kilobytes goes into a Unix stream socket as
/// one buffer or not at all, so `WouldBlock` means nothing of it was written; were part of one
/// ever written, the rest is written blocking, so that no other frame comes between.
pub fn send_now(stream: &mut UnixStream, frame: &[u8]) -> Sent {
    use std::os::fd::AsRawFd;
    // SAFETY: a send of `frame`'s bytes on the socket `stream` owns.
    let sent = unsafe {
        libc::send(stream.as_raw_fd(), frame.as_ptr().cast(), frame.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    match usize::try_from(sent) {
        Ok(n) if n == frame.len() => Sent::All,
        Ok(n) => match stream.write_all(&frame[n..]) {
            Ok(()) => Sent::All,
            Err(_) => Sent::Failed,
        },
        Err(_) if std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock => Sent::WouldBlock,
        Err(_) => Sent::Failed,
    }
}

/// The little-endian bytes of the tensors that are not stored that way already.
fn owned_bytes(tensors: &[Tensor]) -> Vec<Option<Vec<u8>>> {
    tensors.iter().map(|t| t.data.wire_bytes().is_none().then(|| t.data.to_le_bytes())).collect()
}

/// Each tensor's bytes on the wire: its own, or those [`owned_bytes`] made.
fn tensor_bytes<'a>(tensors: &'a [Tensor], owned: &'a [Option<Vec<u8>>]) -> Vec<&'a [u8]> {
    tensors
        .iter()
        .zip(owned)
        .map(|(t, owned)| owned.as_deref().or_else(|| t.data.wire_bytes()).unwrap_or_default())
        .collect()
}

/// The frame's length and header, `tensors` listed in it (those `placed` at their offset).
fn head(mut header: Value, tensors: &[Tensor], bytes: &[&[u8]], placed: &[Option<usize>]) -> Vec<u8> {
    if !tensors.is_empty() {
        let listed: Vec<Value> = tensors
            .iter()
            .zip(bytes)
            .zip(placed)
            .map(|((t, b), at)| {
                let mut entry =
                    json!({"name": t.name, "datatype": t.datatype().kserve_name(), "shape": t.shape, "bytes": b.len()});
                if let Some(at) = at {
                    entry["at"] = json!(at);
                }
                entry
            })
            .collect();
        header["tensors"] = Value::Array(listed);
    }
    let text = header.to_string();
    let mut head = Vec::with_capacity(4 + text.len());
    head.extend_from_slice(&(text.len() as u32).to_le_bytes());
    head.extend_from_slice(text.as_bytes());
    head
}

/// Reads one frame: its header and the tensors it lists, those at an offset of `shared`
/// copied out of it (one copy, the tensor's own).
pub fn read_with(stream: &mut UnixStream, shared: Option<&Shared>) -> std::io::Result<(Value, Vec<Tensor>)> {
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
        let bytes = match (listed["at"].as_u64(), shared) {
            (Some(at), Some(shared)) => shared
                .take(at as usize, len)
                .ok_or_else(|| invalid(format!("output '{name}': {len} bytes at {at}, outside the shared buffer")))?,
            (Some(_), None) => return Err(invalid(format!("output '{name}': in a shared buffer there is none of"))),
            (None, _) => {
                let mut bytes = vec![0; len];
                stream.read_exact(&mut bytes)?;
                bytes
            }
        };
        let count = shape.iter().product();
        // Read in place (the tensor keeps the bytes just read): no second copy.
        let data = TensorData::from_wire_shared(datatype, bytes, count)
            .map_err(|e| invalid(format!("output '{name}': {e}")))?;
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
        let (header, back) = read_with(&mut b, None).expect("read");
        assert_eq!(header["op"], "execute");
        assert_eq!(back, tensors);
    }

    #[test]
    fn a_small_frame_is_sent_whole_or_not_at_all() {
        let (mut a, mut b) = UnixStream::pair().expect("a socket pair");
        let y = Tensor::new("y", vec![4], TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
        assert!(small_frame(json!({"op": "answer"}), std::slice::from_ref(&y), 32).is_none(), "over the bound");
        let frame = small_frame(json!({"op": "answer", "id": 7}), std::slice::from_ref(&y), 8 << 10).expect("small");
        assert!(matches!(send_now(&mut a, &frame), Sent::All));
        let (header, back) = read_with(&mut b, None).expect("read as a written frame");
        assert_eq!((header["id"].as_u64(), back), (Some(7), vec![y]));
        // A full socket: nothing of the frame goes, and the caller is told so.
        let filler = [0u8; 4096];
        let mut sends = 0;
        while matches!(send_now(&mut a, &filler), Sent::All) {
            sends += 1;
            assert!(sends < 100_000, "the socket never filled");
        }
        assert!(matches!(send_now(&mut a, &frame), Sent::WouldBlock));
    }

    #[test]
    fn numbers_cross_the_shared_buffer_and_offsets_outside_it_are_refused() {
        let (mut a, mut b) = UnixStream::pair().expect("a socket pair");
        let mut shared = Shared::new().expect("a memfd");
        let x = Tensor::new("x", vec![3], TensorData::F32(vec![1.0, 2.0, 3.0]));
        write_with(&mut a, json!({"op": "execute"}), std::slice::from_ref(&x), Some(&mut shared)).expect("written");
        // The stub's view: a header whose tensor is at offset 0, and no bytes after it.
        let mut size = [0u8; 4];
        b.read_exact(&mut size).expect("length");
        let mut text = vec![0; u32::from_le_bytes(size) as usize];
        b.read_exact(&mut text).expect("header");
        let header: Value = serde_json::from_slice(&text).expect("JSON");
        assert_eq!(header["tensors"][0]["at"], 0, "{header}");
        // What a stub would answer: its output in the second half.
        shared.put(Shared::HALF, &x.data.to_le_bytes());
        let answer =
            json!({"tensors": [{"name": "y", "datatype": "FP32", "shape": [3], "bytes": 12, "at": Shared::HALF}]});
        let text = answer.to_string();
        a.write_all(&(text.len() as u32).to_le_bytes()).and_then(|()| a.write_all(text.as_bytes())).expect("sent");
        let (_, outputs) = read_with(&mut b, Some(&shared)).expect("read");
        assert_eq!(outputs[0].data, x.data);
        // An input handed on is named where the server put it.
        let handed_on =
            json!({"tensors": [{"name": "y", "datatype": "FP32", "shape": [3], "bytes": 12, "at": 0}]}).to_string();
        a.write_all(&(handed_on.len() as u32).to_le_bytes())
            .and_then(|()| a.write_all(handed_on.as_bytes()))
            .expect("sent");
        let (_, outputs) = read_with(&mut b, Some(&shared)).expect("read");
        assert_eq!(outputs[0].data, x.data);
        let at = Shared::SIZE - 8;
        let outside =
            json!({"tensors": [{"name": "y", "datatype": "FP32", "shape": [3], "bytes": 12, "at": at}]}).to_string();
        a.write_all(&(outside.len() as u32).to_le_bytes())
            .and_then(|()| a.write_all(outside.as_bytes()))
            .expect("sent");
        let error = read_with(&mut b, Some(&shared)).unwrap_err();
        assert!(error.to_string().contains("outside the shared buffer"), "{error}");
    }
}
