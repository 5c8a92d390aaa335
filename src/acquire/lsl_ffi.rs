//! The only unsafe code of affectd's LSL side: the few liblsl calls the safe `lsl` crate does not
//! offer. `lsl` keeps its handles private, so the inlet (and the resolver whose results create it)
//! live here too.
//!
//! Safety, once for the whole module:
//! - Every handle (`lsl_continuous_resolver`, `lsl_streaminfo`, `lsl_inlet`) is owned by exactly
//!   one wrapper, created non-null and destroyed exactly once in its `Drop`.
//! - The wrappers hold raw pointers, so they are neither `Send` nor `Sync`: a handle never leaves
//!   the thread that created it, and `&mut self` on the pull serialises its use.
//! - Buffers passed to liblsl are Rust slices whose exact element counts are passed along; liblsl
//!   writes at most that many elements (it checks that the data length is a multiple of the
//!   channel count and matches the timestamp count, see `pull_chunk`).
//! - Strings liblsl returns from `lsl_get_xml` are copied and then released with
//!   `lsl_destroy_string`, as its API requires; strings from accessors (`lsl_get_name`,
//!   `lsl_child_value_n`, ...) belong to their info object and are copied while it lives.
//!   C strings we pass live across the call.
use std::ffi::{CStr, CString};
use std::os::raw::c_ulong;

use lsl_sys as sys;

/// A liblsl error code, or a failure to create a handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LslError {
    #[error("liblsl: operation timed out")]
    Timeout,
    #[error("liblsl: the stream was lost")]
    Lost,
    #[error("liblsl: bad argument ({0})")]
    Argument(&'static str),
    #[error("liblsl: internal error")]
    Internal,
    #[error("liblsl: could not create {0}")]
    Create(&'static str),
}

fn check(ec: i32) -> Result<(), LslError> {
    match ec {
        0 => Ok(()),
        sys::lsl_error_code_t_lsl_timeout_error => Err(LslError::Timeout),
        sys::lsl_error_code_t_lsl_lost_error => Err(LslError::Lost),
        sys::lsl_error_code_t_lsl_argument_error => Err(LslError::Argument("rejected by liblsl")),
        _ => Err(LslError::Internal),
    }
}

/// A resolved stream's info (short form, as the resolver returns it).
pub struct ResolvedInfo(sys::lsl_streaminfo);

impl Drop for ResolvedInfo {
    fn drop(&mut self) {
        // SAFETY: we own the non-null handle; destroyed once.
        unsafe { sys::lsl_destroy_streaminfo(self.0) }
    }
}

/// liblsl's continuous resolver: keeps discovering streams matching an XPath predicate in the
/// background, so polling it costs nothing and can be interleaved with stop checks.
pub struct Resolver(sys::lsl_continuous_resolver);

impl Resolver {
    pub fn new(predicate: &str, forget_after_s: f64) -> Result<Self, LslError> {
        let pred = CString::new(predicate).map_err(|_| LslError::Argument("NUL in predicate"))?;
        // SAFETY: `pred` is a valid C string for the duration of the call; liblsl copies it.
        let handle =
            unsafe { sys::lsl_create_continuous_resolver_bypred(pred.as_ptr(), forget_after_s) };
        if handle.is_null() {
            return Err(LslError::Create("continuous resolver"));
        }
        Ok(Self(handle))
    }

    /// The streams currently present (at most 16).
    pub fn results(&self) -> Result<Vec<ResolvedInfo>, LslError> {
        let mut buf: [sys::lsl_streaminfo; 16] = [std::ptr::null_mut(); 16];
        // SAFETY: liblsl writes at most `buf.len()` handles into `buf` and returns how many; each
        // written handle is a new streaminfo that we then own.
        let n = unsafe { sys::lsl_resolver_results(self.0, buf.as_mut_ptr(), buf.len() as u32) };
        if n < 0 {
            check(n)?;
        }
        Ok(buf[..n as usize]
            .iter()
            .filter(|h| !h.is_null())
            .map(|&h| ResolvedInfo(h))
            .collect())
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // SAFETY: we own the non-null handle; destroyed once.
        unsafe { sys::lsl_destroy_continuous_resolver(self.0) }
    }
}

/// A float32 pull inlet over a resolved stream.
pub struct Inlet {
    handle: sys::lsl_inlet,
    channels: usize,
}

/// One channel's entry of desc/channels (XDF meta-data convention); "" where absent.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMeta {
    pub label: String,
    pub kind: String,
    pub unit: String,
}

/// What affectd reads from a stream's full header.
#[derive(Debug, Clone)]
pub struct Header {
    pub name: String,
    pub stream_type: String,
    pub source_id: String,
    pub channel_count: usize,
    pub nominal_srate: f64,
    pub channel_format: lsl::ChannelFormat,
    pub hostname: String,
    pub uid: String,
    pub channels: Vec<ChannelMeta>,
    /// `lsl_get_xml`: the whole header, for the recorder.
    pub xml: String,
}

/// Copies a string liblsl keeps ownership of (NULL reads as "").
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that stays valid during the call.
unsafe fn copy_str(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// One `lsl_time_correction_ex` estimate.
#[derive(Debug, Clone, Copy)]
pub struct TimeCorrection {
    /// Add to a remote timestamp to map it to the local clock.
    pub offset: f64,
    /// The remote clock when the estimate was taken.
    pub remote_time: f64,
}

impl Inlet {
    /// `buffer_s`: seconds liblsl buffers before it silently drops the oldest data.
    /// `recover`: reconnect by itself when an outlet with the same source_id reappears.
    pub fn open(info: &ResolvedInfo, buffer_s: i32, recover: bool) -> Result<Self, LslError> {
        // SAFETY: `info.0` is a live streaminfo handle; liblsl copies it into the inlet.
        let (channels, handle) = unsafe {
            let channels = sys::lsl_get_channel_count(info.0);
            (
                channels,
                sys::lsl_create_inlet(info.0, buffer_s, 0, recover as i32),
            )
        };
        if handle.is_null() {
            return Err(LslError::Create("inlet"));
        }
        let inlet = Self {
            handle,
            channels: channels.max(0) as usize,
        };
        if inlet.channels == 0 {
            return Err(LslError::Argument("stream has no channels"));
        }
        Ok(inlet)
    }

    /// The stream's full header. Read through liblsl's accessors on the live info object
    /// (liblsl 1.18's `lsl_streaminfo_from_xml` returns a blank info, so the XML cannot be
    /// re-parsed through the safe `lsl` crate).
    pub fn full_info(&self, timeout_s: f64) -> Result<Header, LslError> {
        let mut ec = 0i32;
        // SAFETY: live inlet; `ec` outlives the call. The returned info is ours and destroyed by
        // `ResolvedInfo`'s Drop once everything was copied out of it.
        let info = unsafe { sys::lsl_get_fullinfo(self.handle, timeout_s, &mut ec) };
        check(ec)?;
        if info.is_null() {
            return Err(LslError::Internal);
        }
        let info = ResolvedInfo(info);
        let h = info.0;
        // SAFETY: `h` is live for this whole block. Accessor strings are owned by the info (copied
        // by `copy_str` before the info is dropped); `lsl_get_xml`'s string is ours and released
        // after copying. XML cursors point into the info's document and are only used here.
        unsafe {
            let xml_ptr = sys::lsl_get_xml(h);
            if xml_ptr.is_null() {
                return Err(LslError::Internal);
            }
            let xml = CStr::from_ptr(xml_ptr).to_string_lossy().into_owned();
            sys::lsl_destroy_string(xml_ptr);
            let mut channels = Vec::new();
            let channels_tag = sys::lsl_child(sys::lsl_get_desc(h), c"channels".as_ptr());
            let mut ch = sys::lsl_child(channels_tag, c"channel".as_ptr());
            while sys::lsl_empty(ch) == 0 {
                channels.push(ChannelMeta {
                    label: copy_str(sys::lsl_child_value_n(ch, c"label".as_ptr())),
                    kind: copy_str(sys::lsl_child_value_n(ch, c"type".as_ptr())),
                    unit: copy_str(sys::lsl_child_value_n(ch, c"unit".as_ptr())),
                });
                ch = sys::lsl_next_sibling_n(ch, c"channel".as_ptr());
            }
            Ok(Header {
                name: copy_str(sys::lsl_get_name(h)),
                stream_type: copy_str(sys::lsl_get_type(h)),
                source_id: copy_str(sys::lsl_get_source_id(h)),
                channel_count: sys::lsl_get_channel_count(h).max(0) as usize,
                nominal_srate: sys::lsl_get_nominal_srate(h),
                channel_format: lsl::ChannelFormat::from_native(sys::lsl_get_channel_format(h)),
                hostname: copy_str(sys::lsl_get_hostname(h)),
                uid: copy_str(sys::lsl_get_uid(h)),
                channels,
                xml,
            })
        }
    }

    /// Pulls up to `timestamps.len()` samples into caller buffers without allocating: waits up to
    /// `timeout_s` for the first sample, then takes what is already there without waiting more
    /// (liblsl's chunk pull with a timeout would otherwise always wait the full timeout unless the
    /// buffer fills). Returns the number of samples written; 0 = nothing arrived in time.
    pub fn pull_chunk(
        &mut self,
        data: &mut [f32],
        timestamps: &mut [f64],
        timeout_s: f64,
    ) -> Result<usize, LslError> {
        let ch = self.channels;
        if timestamps.is_empty() || data.len() != timestamps.len() * ch {
            return Err(LslError::Argument("buffer size is not samples x channels"));
        }
        let mut ec = 0i32;
        // SAFETY: live inlet; `data` has room for `ch` values (checked above).
        let t0 = unsafe {
            sys::lsl_pull_sample_f(
                self.handle,
                data.as_mut_ptr(),
                ch as i32,
                timeout_s,
                &mut ec,
            )
        };
        check(ec)?;
        if t0 == 0.0 {
            return Ok(0);
        }
        timestamps[0] = t0;
        let rest_ts = &mut timestamps[1..];
        if rest_ts.is_empty() {
            return Ok(1);
        }
        let rest = &mut data[ch..];
        // SAFETY: live inlet; `rest` holds exactly `rest_ts.len() * ch` values, the counts passed.
        let written = unsafe {
            sys::lsl_pull_chunk_f(
                self.handle,
                rest.as_mut_ptr(),
                rest_ts.as_mut_ptr(),
                rest.len() as c_ulong,
                rest_ts.len() as c_ulong,
                0.0,
                &mut ec,
            )
        };
        check(ec)?;
        Ok(1 + written as usize / ch)
    }

    /// The current clock offset estimate (instant after the first, which waits up to `timeout_s`).
    pub fn time_correction(&self, timeout_s: f64) -> Result<TimeCorrection, LslError> {
        let (mut remote_time, mut uncertainty, mut ec) = (0.0f64, 0.0f64, 0i32);
        // SAFETY: live inlet; the out-pointers point at locals that outlive the call.
        let offset = unsafe {
            sys::lsl_time_correction_ex(
                self.handle,
                &mut remote_time,
                &mut uncertainty,
                timeout_s,
                &mut ec,
            )
        };
        check(ec)?;
        Ok(TimeCorrection {
            offset,
            remote_time,
        })
    }
}

impl Drop for Inlet {
    fn drop(&mut self) {
        // SAFETY: we own the non-null handle; destroyed once (this also closes the stream).
        unsafe { sys::lsl_destroy_inlet(self.handle) }
    }
}
