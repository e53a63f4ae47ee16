//! The part of OpenVINO's C API (`openvino/c/openvino.h`, 2.0 API) corral calls, resolved
//! from `libopenvino_c.so` at run time with libloading: no build script, no headers, no
//! link-time dependency. Our own bindings rather than `openvino-sys` with `runtime-linking`,
//! which drops the variadic arguments of `ov_core_compile_model` (a compiled model's
//! properties, which corral needs: its threads and precision) and builds a generator's
//! worth of build-script dependencies.
//!
//! Every handle is an opaque pointer; every call returns a status (0 is OK) whose words are
//! `ov_get_last_err_msg`'s, else `ov_get_error_info`'s.

use std::ffi::{CStr, c_char, c_void};

/// `ov_status_e`: 0 is OK.
pub type Status = i32;
/// An opaque handle (`ov_core_t*`, `ov_model_t*`, …).
pub type Handle = *mut c_void;

/// `ov_shape_t`.
#[repr(C)]
pub struct Shape {
    pub rank: i64,
    pub dims: *mut i64,
}

/// `ov_dimension_t` (and `ov_rank_t`): inclusive bounds, -1 for none.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Dimension {
    pub min: i64,
    pub max: i64,
}

/// `ov_partial_shape_t`.
#[repr(C)]
pub struct PartialShape {
    pub rank: Dimension,
    pub dims: *mut Dimension,
}

/// `ov_version_t`.
#[repr(C)]
pub struct Version {
    pub build_number: *const c_char,
    pub description: *const c_char,
}

/// `ov_available_devices_t`.
#[repr(C)]
pub struct Devices {
    pub devices: *mut *mut c_char,
    pub size: usize,
}

/// `ov_element_type_e`'s values that corral carries.
pub mod element {
    pub const BOOLEAN: i32 = 1;
    pub const BF16: i32 = 2;
    pub const F16: i32 = 3;
    pub const F32: i32 = 4;
    pub const F64: i32 = 5;
    pub const I8: i32 = 7;
    pub const I16: i32 = 8;
    pub const I32: i32 = 9;
    pub const I64: i32 = 10;
    pub const U8: i32 = 16;
    pub const U16: i32 = 17;
    pub const U32: i32 = 18;
    pub const U64: i32 = 19;
    pub const STRING: i32 = 23;
}

macro_rules! api {
    ($($field:ident = $symbol:literal: $ty:ty;)*) => {
        /// The functions, resolved once; the library stays loaded as long as this lives.
        pub struct Api {
            $(pub $field: $ty,)*
            _library: libloading::Library,
        }

        impl Api {
            /// Loads `path` and resolves every function, naming the first one missing.
            ///
            /// # Safety
            ///
            /// `path` must be OpenVINO's C library, whose functions have these signatures.
            pub unsafe fn load(path: &std::path::Path) -> Result<Api, String> {
                // SAFETY: loading runs the library's initialisers, which is what the caller
                // asked for by naming OpenVINO's library.
                let library = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
                $(
                    // SAFETY: the symbol is the C API function of this name, whose signature
                    // the field's type spells out (the caller vouches for the library).
                    let $field: $ty = *unsafe { library.get::<$ty>($symbol.as_bytes()) }
                        .map_err(|e| format!("{} is missing: {e}", $symbol))?;
                )*
                Ok(Api { $($field,)* _library: library })
            }
        }
    };
}

api! {
    get_version = "ov_get_openvino_version": unsafe extern "C" fn(*mut Version) -> Status;
    version_free = "ov_version_free": unsafe extern "C" fn(*mut Version);
    last_error = "ov_get_last_err_msg": unsafe extern "C" fn() -> *const c_char;
    error_info = "ov_get_error_info": unsafe extern "C" fn(Status) -> *const c_char;
    free = "ov_free": unsafe extern "C" fn(*const c_char);
    core_create = "ov_core_create": unsafe extern "C" fn(*mut Handle) -> Status;
    available_devices = "ov_core_get_available_devices": unsafe extern "C" fn(Handle, *mut Devices) -> Status;
    available_devices_free = "ov_available_devices_free": unsafe extern "C" fn(*mut Devices);
    read_model = "ov_core_read_model": unsafe extern "C" fn(Handle, *const c_char, *const c_char, *mut Handle) -> Status;
    compile_model = "ov_core_compile_model": unsafe extern "C" fn(Handle, Handle, *const c_char, usize, *mut Handle, ...) -> Status;
    model_free = "ov_model_free": unsafe extern "C" fn(Handle);
    inputs_size = "ov_model_inputs_size": unsafe extern "C" fn(Handle, *mut usize) -> Status;
    outputs_size = "ov_model_outputs_size": unsafe extern "C" fn(Handle, *mut usize) -> Status;
    input_port = "ov_model_const_input_by_index": unsafe extern "C" fn(Handle, usize, *mut Handle) -> Status;
    output_port = "ov_model_const_output_by_index": unsafe extern "C" fn(Handle, usize, *mut Handle) -> Status;
    port_name = "ov_port_get_any_name": unsafe extern "C" fn(Handle, *mut *mut c_char) -> Status;
    port_element_type = "ov_port_get_element_type": unsafe extern "C" fn(Handle, *mut i32) -> Status;
    port_partial_shape = "ov_port_get_partial_shape": unsafe extern "C" fn(Handle, *mut PartialShape) -> Status;
    partial_shape_free = "ov_partial_shape_free": unsafe extern "C" fn(*mut PartialShape);
    port_free = "ov_output_const_port_free": unsafe extern "C" fn(Handle);
    compiled_free = "ov_compiled_model_free": unsafe extern "C" fn(Handle);
    create_request = "ov_compiled_model_create_infer_request": unsafe extern "C" fn(Handle, *mut Handle) -> Status;
    request_free = "ov_infer_request_free": unsafe extern "C" fn(Handle);
    set_input = "ov_infer_request_set_input_tensor_by_index": unsafe extern "C" fn(Handle, usize, Handle) -> Status;
    get_output = "ov_infer_request_get_output_tensor_by_index": unsafe extern "C" fn(Handle, usize, *mut Handle) -> Status;
    infer = "ov_infer_request_infer": unsafe extern "C" fn(Handle) -> Status;
    tensor_from_host = "ov_tensor_create_from_host_ptr": unsafe extern "C" fn(i32, Shape, *mut c_void, *mut Handle) -> Status;
    tensor_shape = "ov_tensor_get_shape": unsafe extern "C" fn(Handle, *mut Shape) -> Status;
    tensor_element_type = "ov_tensor_get_element_type": unsafe extern "C" fn(Handle, *mut i32) -> Status;
    tensor_byte_size = "ov_tensor_get_byte_size": unsafe extern "C" fn(Handle, *mut usize) -> Status;
    tensor_data = "ov_tensor_data": unsafe extern "C" fn(Handle, *mut *mut c_void) -> Status;
    tensor_free = "ov_tensor_free": unsafe extern "C" fn(Handle);
    shape_free = "ov_shape_free": unsafe extern "C" fn(*mut Shape) -> Status;
}

impl Api {
    /// `status` as a result, in OpenVINO's words after `what`.
    pub fn check(&self, status: Status, what: &str) -> Result<(), String> {
        if status == 0 {
            return Ok(());
        }
        // SAFETY: both return static or thread-local C strings (never freed by the caller),
        // or null.
        let words = unsafe { text((self.last_error)()).or_else(|| text((self.error_info)(status))) };
        Err(format!("{what}: {}", words.unwrap_or_else(|| format!("status {status}"))))
    }

    /// The library's version, as `ov_get_openvino_version` gives it (`2026.4.1-22982-…`).
    pub fn version(&self) -> Result<String, String> {
        let mut version = Version { build_number: std::ptr::null(), description: std::ptr::null() };
        // SAFETY: `version` is a valid struct for the call to fill.
        self.check(unsafe { (self.get_version)(&mut version) }, "ov_get_openvino_version")?;
        // SAFETY: the call filled it with C strings (or null), freed right after.
        let number = unsafe { text(version.build_number) };
        // SAFETY: filled by `get_version` above, freed once.
        unsafe { (self.version_free)(&mut version) };
        number.ok_or_else(|| "no version number".to_owned())
    }
}

/// A C string's text, or `None` for null or empty.
///
/// # Safety
///
/// `ptr` is null or a NUL-terminated string valid for the call.
pub unsafe fn text(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: as the caller promised.
    let text = unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned();
    (!text.is_empty()).then_some(text)
}
