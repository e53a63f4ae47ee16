//! Triton's system shared-memory extension: clients register regions of POSIX shared memory
//! (`/dev/shm/<key>`) and name them in a call's input and output parameters
//! (`shared_memory_region`, `shared_memory_offset`, `shared_memory_byte_size`) instead of
//! sending the bytes.
//!
//! A region is an open file, read and written with `pread`/`pwrite`, not mapped: a client
//! that truncates or removes its file can then cost a call a clean error, never the server a
//! `SIGBUS`. Every use checks the file is still linked and long enough, and every offset and
//! size against the region, before any allocation.
//!
//! Errors are Triton's, word for word and code for code (`triton.rs`), in its order: a key
//! with Triton's reserved prefix is refused first, then a name already registered, a key that
//! cannot be opened (500), a region past the end of its file; an unknown region is 404. CUDA
//! shared memory is what Triton built without GPUs answers ([`cuda_status`]): status lists
//! nothing, unregister succeeds, register is refused (`triton::cuda_register`).

use std::{
    collections::BTreeMap,
    fs::File,
    os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    sync::{Arc, Mutex},
};

use corral_engine::{DataType, Tensor};
use corral_runtime::sync::lock;

use crate::{error::CallError, strings::Unread, triton};

/// An input whose bytes are in shared memory: read just before the call runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ShmInput {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<usize>,
    pub at: ShmRef,
}

impl ShmInput {
    /// Checks the size against the shape (before reading anything), in Triton's words (`id`
    /// is the request's, `model` the model's), then reads the tensor.
    pub fn read(&self, regions: &Regions, id: Option<&str>, model: &str) -> Result<Tensor, CallError> {
        let name = &self.name;
        let elements = self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let needed = self.datatype.size().map(|size| elements.and_then(|n| n.checked_mul(size)));
        if let Some(needed) = needed.filter(|&needed| needed != Some(self.at.byte_size as usize)) {
            let needed = needed.unwrap_or(usize::MAX);
            return Err(triton::byte_size_mismatch(id, name, model, needed, self.at.byte_size as usize));
        }
        let bytes = regions.read(&self.at, &format!("input '{name}'"))?;
        let count =
            elements.ok_or_else(|| CallError::bad_request(format!("input '{name}': the shape is too large")))?;
        // Read into a buffer of its own, aligned as the allocator aligns (16 bytes): the
        // tensor reads it in place.
        let data =
            crate::strings::from_wire(self.datatype, bytes.into(), count, id, name, model).map_err(|e| match e {
                Unread::Miscounted(error) => error,
                Unread::Wire(e) => CallError::bad_request(format!("input '{name}': shared memory holds {e}")),
            })?;
        Ok(Tensor::new(name.clone(), self.shape.clone(), data))
    }
}

/// Where a tensor's bytes are in shared memory, as a call names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShmRef {
    pub region: String,
    pub offset: u64,
    pub byte_size: u64,
}

/// What a status request shows of a region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionStatus {
    pub name: String,
    pub key: String,
    pub offset: u64,
    pub byte_size: u64,
}

struct Region {
    status: RegionStatus,
    file: Arc<File>,
}

/// The registered regions of a server.
pub struct Regions {
    regions: Mutex<BTreeMap<String, Region>>,
    /// Triton's `--allow-client-shm`: whether clients may register and unregister regions.
    allowed: bool,
}

/// Triton's reserved key prefix (`common.h`, `kTritonSharedMemoryRegionPrefix`): its Python
/// backend's own regions.
pub const RESERVED_KEY_PREFIX: &str = "triton_python_backend_shm_region_";

impl Regions {
    pub fn new(allowed: bool) -> Regions {
        Regions { regions: Mutex::new(BTreeMap::new()), allowed }
    }

    /// Refuses registering and unregistering when client shared memory is off (Triton checks it
    /// first, http_server.cc `HandleSystemSharedMemory`, `HandleCudaSharedMemory`).
    pub fn check_allowed(&self) -> Result<(), CallError> {
        if self.allowed { Ok(()) } else { Err(triton::shm_disabled()) }
    }

    /// Registers `name` as `byte_size` bytes at `offset` of `/dev/shm/<key>`, checking in
    /// Triton's order: the key's prefix, the name, the file, the size.
    pub fn register(&self, name: &str, key: &str, offset: u64, byte_size: u64) -> Result<(), CallError> {
        self.check_allowed()?;
        if name.is_empty() {
            return Err(triton::shm_unnamed());
        }
        let file_name = key.trim_start_matches('/');
        if file_name.is_empty() {
            return Err(triton::shm_invalid_key(name, key));
        }
        if file_name.starts_with(RESERVED_KEY_PREFIX) {
            return Err(triton::shm_reserved_key(name, key, RESERVED_KEY_PREFIX));
        }
        if lock(&self.regions).contains_key(name) {
            return Err(triton::shm_registered(name));
        }
        // shm_open takes one name under /dev/shm; corral opens that file without following
        // a link, so a key can never reach outside it.
        let unopenable = || triton::shm_unopenable(key);
        if file_name.contains('/') || file_name == "." || file_name == ".." {
            return Err(unopenable());
        }
        let path = std::path::Path::new("/dev/shm").join(file_name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|_| unopenable())?;
        let length = file.metadata().map_err(|_| triton::shm_unsized(key))?.len();
        if offset.checked_add(byte_size).is_none_or(|end| end > length) {
            return Err(triton::shm_invalid_args(name));
        }
        let mut regions = lock(&self.regions);
        if regions.contains_key(name) {
            return Err(triton::shm_registered(name));
        }
        let status = RegionStatus { name: name.to_owned(), key: key.to_owned(), offset, byte_size };
        regions.insert(name.to_owned(), Region { status, file: Arc::new(file) });
        Ok(())
    }

    /// Unregisters `name`, or every region when `None` (unknown names are no error, as in Triton).
    pub fn unregister(&self, name: Option<&str>) -> Result<(), CallError> {
        self.check_allowed()?;
        let mut regions = lock(&self.regions);
        match name {
            Some(name) => {
                regions.remove(name);
            }
            None => regions.clear(),
        }
        Ok(())
    }

    /// The status of `name`, or of every region.
    pub fn status(&self, name: Option<&str>) -> Result<Vec<RegionStatus>, CallError> {
        let regions = lock(&self.regions);
        match name {
            None => Ok(regions.values().map(|r| r.status.clone()).collect()),
            Some(name) => {
                regions.get(name).map(|r| vec![r.status.clone()]).ok_or_else(|| triton::shm_status_unknown(name))
            }
        }
    }

    /// The file and the absolute position of `at`'s bytes, checked against the region and
    /// the file as it is now.
    fn locate(&self, at: &ShmRef, what: &str) -> Result<(Arc<File>, u64), CallError> {
        let (file, region_offset, region_size) = {
            let regions = lock(&self.regions);
            let region = regions.get(&at.region).ok_or_else(|| triton::shm_unknown_region(&at.region))?;
            (region.file.clone(), region.status.offset, region.status.byte_size)
        };
        // Triton's checks, in its order; then corral's of the file as it is now.
        let region = &at.region;
        if at.offset >= region_size {
            return Err(triton::shm_invalid_offset(region));
        }
        let Some(end) = at.offset.checked_add(at.byte_size) else {
            return Err(triton::shm_overflow(region, at.byte_size, at.offset));
        };
        if end > region_size {
            return Err(triton::shm_invalid_end(region));
        }
        let start = region_offset + at.offset;
        let meta = file.metadata().map_err(|e| CallError::bad_request(format!("{what}: {e}")))?;
        if meta.nlink() == 0 {
            return Err(CallError::bad_request(format!(
                "{what}: the file of shared memory region '{}' was removed; register it again",
                at.region
            )));
        }
        if start + at.byte_size > meta.len() {
            return Err(CallError::bad_request(format!(
                "{what}: the file of shared memory region '{}' shrank to {} bytes; register it again",
                at.region,
                meta.len()
            )));
        }
        Ok((file, start))
    }

    /// The `at.byte_size` bytes `at` names, read into a buffer that is not zeroed first (a
    /// tenth of a 602 KB call's server time went to zeroing it).
    pub fn read(&self, at: &ShmRef, what: &str) -> Result<Vec<u8>, CallError> {
        use std::os::fd::AsRawFd;
        let (file, start) = self.locate(at, what)?;
        let len = at.byte_size as usize;
        let mut bytes: Vec<u8> = Vec::with_capacity(len);
        let mut done = 0;
        while done < len {
            let offset = libc::off_t::try_from(start + done as u64)
                .map_err(|_| CallError::bad_request(format!("{what}: the offset is past what a file can hold")))?;
            // SAFETY: the buffer's spare capacity holds `len - done` writable bytes from `done`
            // on; `pread` writes at most that many.
            let n = unsafe { libc::pread(file.as_raw_fd(), bytes.as_mut_ptr().add(done).cast(), len - done, offset) };
            match n {
                0 => return Err(CallError::bad_request(format!("{what}: failed to fill whole buffer"))),
                n if n > 0 => done += n as usize,
                _ => {
                    let error = std::io::Error::last_os_error();
                    if error.kind() != std::io::ErrorKind::Interrupted {
                        return Err(CallError::bad_request(format!("{what}: {error}")));
                    }
                }
            }
        }
        // SAFETY: `pread` wrote all `len` bytes.
        unsafe { bytes.set_len(len) };
        Ok(bytes)
    }

    /// Writes `bytes` at `at` (which must hold them).
    pub fn write(&self, at: &ShmRef, bytes: &[u8], what: &str) -> Result<(), CallError> {
        if bytes.len() as u64 > at.byte_size {
            return Err(triton::shm_too_small(what, at.byte_size, bytes.len()));
        }
        let (file, start) = self.locate(at, what)?;
        file.write_all_at(bytes, start).map_err(|e| CallError::bad_request(format!("{what}: {e}")))
    }
}

/// The status of CUDA region `name` (or of all): Triton without GPUs holds none, and says so
/// of a name registered as system memory.
pub fn cuda_status(regions: &Regions, name: Option<&str>) -> Result<(), CallError> {
    let Some(name) = name else { return Ok(()) };
    if lock(&regions.regions).contains_key(name) {
        Err(triton::cuda_status_system(name))
    } else {
        Err(triton::cuda_status_unknown(name))
    }
}

/// Reads a call's shared-memory parameters: `None` when `region` is absent.
pub fn reference(
    region: Option<&str>,
    offset: Option<u64>,
    byte_size: Option<u64>,
    what: &str,
) -> Result<Option<ShmRef>, CallError> {
    let Some(region) = region else {
        if offset.is_some() || byte_size.is_some() {
            return Err(CallError::bad_request(format!(
                "{what}: shared_memory_offset or shared_memory_byte_size without shared_memory_region"
            )));
        }
        return Ok(None);
    };
    let byte_size = byte_size
        .ok_or_else(|| CallError::bad_request(format!("{what}: shared_memory_region needs shared_memory_byte_size")))?;
    Ok(Some(ShmRef { region: region.to_owned(), offset: offset.unwrap_or(0), byte_size }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_sizes_and_a_shrinking_file_are_checked() {
        let key = format!("corral-shm-test-{}", std::process::id());
        let path = std::path::Path::new("/dev/shm").join(&key);
        std::fs::write(&path, [7u8; 64]).expect("/dev/shm is writable");
        let regions = Regions::new(true);
        assert!(regions.register("r", &format!("/{key}"), 8, 100).is_err(), "past the file");
        regions.register("r", &format!("/{key}"), 8, 32).expect("fits");
        assert!(regions.register("r", &format!("/{key}"), 0, 1).unwrap_err().message.contains("already in manager"));
        let at = |offset, byte_size| ShmRef { region: "r".into(), offset, byte_size };
        assert_eq!(regions.read(&at(0, 4), "input").expect("reads"), vec![7; 4]);
        assert_eq!(
            regions.read(&at(30, 4), "input").unwrap_err().message,
            "Invalid offset + byte size for shared memory region: 'r'"
        );
        assert_eq!(
            regions.read(&at(32, 4), "input").unwrap_err().message,
            "Invalid offset for shared memory region: 'r'"
        );
        let reserved = regions.register("p", "/triton_python_backend_shm_region_1", 0, 1).unwrap_err();
        assert_eq!(
            reserved.message,
            "cannot register shared memory region 'p' with key '/triton_python_backend_shm_region_1' as the key contains the reserved prefix 'triton_python_backend_shm_region_'"
        );
        assert!(regions.read(&at(u64::MAX, 2), "input").is_err(), "overflow is an error, not a panic");
        regions.write(&at(4, 4), &[1, 2, 3, 4], "output `y`").expect("writes");
        assert_eq!(&std::fs::read(&path).expect("read")[12..16], &[1, 2, 3, 4]);
        assert!(regions.write(&at(0, 2), &[0; 4], "output `y`").unwrap_err().message.contains("at least 4 bytes"));
        std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(10).expect("shrink");
        assert!(regions.read(&at(0, 4), "input").unwrap_err().message.contains("shrank"));
        std::fs::remove_file(&path).expect("remove");
        assert!(regions.read(&at(0, 1), "input").unwrap_err().message.contains("was removed"));
        assert!(regions.register("x", "/../etc/passwd", 0, 1).is_err());
        regions.unregister(None).expect("allowed");
        assert!(
            regions.status(Some("r")).unwrap_err().message.contains("Unable to find system shared memory region: 'r'")
        );
    }
}
