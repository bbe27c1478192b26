//! Safe Rust API over libnormkit: SIMD CPU kernels for normalization layers.
//!
//! Tensors are `f32` slices in row-major order described by a [`Layout`]
//! (dimensions and feature axes). Every function checks slice lengths
//! against the layout before calling C, and returns `Result<_, Error>` with
//! the C status and detail message.
//!
//! ```no_run
//! use normkit::{BatchNorm, Layout};
//! let layout = Layout::nchw(8, 16, 4, 4);
//! let x = vec![1.0f32; layout.len()];
//! let mut bn = BatchNorm::new(16);
//! let y = bn.forward_training(&layout, &x).unwrap();
//! let dx = bn.backward(&layout, &x, &y).unwrap();
//! ```
use normkit_sys as sys;
use std::ffi::{c_void, CStr, CString};
use std::fmt;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, Ordering};

/// A failed normkit call: the C status code and the detail message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: i32,
    pub message: String,
}

impl Error {
    fn from_c(status: i32) -> Error {
        let message = unsafe { CStr::from_ptr(sys::nk_last_error()) }.to_string_lossy().into_owned();
        Error { status, message }
    }
    /// A check made on the Rust side, with the status C would have given.
    fn rust(status: i32, message: String) -> Error {
        Error { status, message }
    }
    /// The C description of the status (never fails).
    pub fn status_string(&self) -> String {
        unsafe { CStr::from_ptr(sys::nk_status_string(self.status)) }.to_string_lossy().into_owned()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "normkit: {} ({}): {}", self.status_string(), self.status, self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn check(status: i32) -> Result<()> {
    if status == sys::NK_OK {
        Ok(())
    } else {
        Err(Error::from_c(status))
    }
}

fn c_str(p: *const std::os::raw::c_char) -> String {
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

// ---- versions and settings ------------------------------------------------

/// The library's (major, minor, patch) at run time.
pub fn version() -> (i32, i32, i32) {
    unsafe { (sys::nk_version_major(), sys::nk_version_minor(), sys::nk_version_patch()) }
}
pub fn version_string() -> String {
    c_str(unsafe { sys::nk_version_string() })
}
/// Fails unless the loaded library has the major version this crate was written for.
pub fn check_version() -> Result<()> {
    let major = unsafe { sys::nk_version_major() };
    if major != sys::NK_VERSION_MAJOR {
        return Err(Error::rust(
            sys::NK_ERR_UNSUPPORTED,
            format!("libnormkit major version {major}, this crate needs {}", sys::NK_VERSION_MAJOR),
        ));
    }
    Ok(())
}
/// Caps the ISA ("avx512", "avx2", "sse2", "neon", "scalar"); None removes the cap.
pub fn set_max_isa(name: Option<&str>) -> Result<()> {
    let c = name.map(|n| CString::new(n).map_err(|_| Error::rust(sys::NK_ERR_BAD_ISA, "NUL in ISA name".into())));
    let c = c.transpose()?;
    check(unsafe { sys::nk_set_max_isa(c.as_ref().map_or(null(), |c| c.as_ptr())) })
}
pub fn active_isa() -> String {
    c_str(unsafe { sys::nk_active_isa() })
}
pub fn isa_available(name: &str) -> bool {
    CString::new(name).map_or(false, |c| unsafe { sys::nk_isa_available(c.as_ptr()) } != 0)
}
pub fn set_num_threads(n: i32) -> Result<()> {
    check(unsafe { sys::nk_set_num_threads(n) })
}
pub fn num_threads() -> i32 {
    unsafe { sys::nk_get_num_threads() }
}
pub fn set_stream_threshold(bytes: i64) -> Result<()> {
    check(unsafe { sys::nk_set_stream_threshold(bytes) })
}
pub fn stream_threshold() -> i64 {
    unsafe { sys::nk_get_stream_threshold() }
}

// ---- tensors -----------------------------------------------------------------

/// A dense row-major float32 tensor's dimensions and feature axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    desc: sys::nk_tensor_desc,
    len: usize,
    channels: usize,
}

impl Layout {
    /// `dims` row-major (outermost first), `axes` the feature axes (negative
    /// counts from the end), as TensorFlow's `axis`.
    pub fn new(dims: &[i64], axes: &[i32]) -> Result<Layout> {
        let bad = |s, m: String| Err(Error::rust(s, m));
        if dims.is_empty() || dims.len() > sys::NK_MAX_DIMS {
            return bad(sys::NK_ERR_BAD_SHAPE, format!("ndim = {}: must be 1 .. 8", dims.len()));
        }
        if axes.is_empty() || axes.len() > dims.len() {
            return bad(sys::NK_ERR_BAD_AXIS, format!("{} feature axes for ndim {}", axes.len(), dims.len()));
        }
        let nd = dims.len() as i32;
        let mut desc = sys::nk_tensor_desc { dtype: sys::NK_DTYPE_F32, ndim: nd, num_axes: axes.len() as i32, ..Default::default() };
        let mut len: i64 = 1;
        for (i, &d) in dims.iter().enumerate() {
            if d < 1 {
                return bad(sys::NK_ERR_BAD_SHAPE, format!("dims[{i}] = {d}: must be >= 1"));
            }
            desc.dims[i] = d;
            len = len.checked_mul(d).ok_or_else(|| Error::rust(sys::NK_ERR_OVERFLOW, "size overflows int64".into()))?;
        }
        let mut channels: i64 = 1;
        let mut seen = [false; sys::NK_MAX_DIMS];
        for (i, &a) in axes.iter().enumerate() {
            let n = if a < 0 { a + nd } else { a };
            if n < 0 || n >= nd || seen[n as usize] {
                return bad(sys::NK_ERR_BAD_AXIS, format!("axes[{i}] = {a}: out of range or repeated"));
            }
            seen[n as usize] = true;
            desc.axes[i] = a;
            channels *= dims[n as usize];
        }
        let len = usize::try_from(len).map_err(|_| Error::rust(sys::NK_ERR_OVERFLOW, "size overflows usize".into()))?;
        Ok(Layout { desc, len, channels: channels as usize })
    }
    /// NCHW: feature axis 1.
    pub fn nchw(n: i64, c: i64, h: i64, w: i64) -> Layout {
        Layout::new(&[n, c, h, w], &[1]).expect("valid NCHW dimensions")
    }
    /// NHWC: feature axis -1.
    pub fn nhwc(n: i64, h: i64, w: i64, c: i64) -> Layout {
        Layout::new(&[n, h, w, c], &[-1]).expect("valid NHWC dimensions")
    }
    /// NC: feature axis 1.
    pub fn nc(n: i64, c: i64) -> Layout {
        Layout::new(&[n, c], &[1]).expect("valid NC dimensions")
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// C: the product of the feature dimensions (length of parameter arrays).
    pub fn channels(&self) -> usize {
        self.channels
    }
    /// The size of axis 0 (N).
    pub fn batch(&self) -> i64 {
        self.desc.dims[0]
    }
    pub fn dims(&self) -> &[i64] {
        &self.desc.dims[..self.desc.ndim as usize]
    }
    pub fn raw(&self) -> &sys::nk_tensor_desc {
        &self.desc
    }
    fn check_tensor(&self, name: &str, n: usize) -> Result<()> {
        if n != self.len {
            return Err(Error::rust(sys::NK_ERR_BAD_SHAPE, format!("{name} has {n} elements, the layout {:?} needs {}", self.dims(), self.len)));
        }
        Ok(())
    }
}

fn check_len(name: &str, n: usize, want: usize) -> Result<()> {
    if n != want {
        return Err(Error::rust(sys::NK_ERR_BAD_SHAPE, format!("{name} has {n} elements, needs {want}")));
    }
    Ok(())
}

fn opt_ptr(name: &str, a: Option<&[f32]>, want: usize) -> Result<*const f32> {
    match a {
        None => Ok(null()),
        Some(a) => check_len(name, a.len(), want).map(|_| a.as_ptr()),
    }
}

fn opt_mut(name: &str, a: Option<&mut [f32]>, want: usize) -> Result<*mut f32> {
    match a {
        None => Ok(null_mut()),
        Some(a) => check_len(name, a.len(), want).map(|_| a.as_mut_ptr()),
    }
}

// ---- options --------------------------------------------------------------------

/// Moving-statistics update convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Momentum {
    /// moving = momentum * moving + (1 - momentum) * batch
    Tf,
    /// running = (1 - momentum) * running + momentum * batch
    Torch,
}

/// Grouping of virtual batches (Ghost Batch Norm).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// TF: batch g holds the samples n with n mod G = g.
    Strided,
    /// The paper: contiguous chunks of V samples.
    Contiguous,
}

// The C struct each call passes: a copy whose struct_size this crate sets,
// whatever the public field holds, so that no safe caller can make the
// library read past the struct.
macro_rules! raw_options {
    ($t:ident, $c:ty) => {
        impl $t {
            fn raw(&self) -> $c {
                let mut o = self.0;
                o.struct_size = std::mem::size_of::<$c>() as u64;
                o
            }
        }
    };
}
raw_options!(BnOptions, sys::nk_bn_options);
raw_options!(GnOptions, sys::nk_gn_options);
raw_options!(InOptions, sys::nk_in_options);
raw_options!(LnOptions, sys::nk_ln_options);
raw_options!(SnOptions, sys::nk_sn_options);

/// Batch Norm options, starting from TF's defaults (`BnOptions::default()`).
/// The C struct is public for fields without a builder; its `struct_size`
/// is ignored (each call passes the crate's own).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnOptions(pub sys::nk_bn_options);

impl Default for BnOptions {
    fn default() -> Self {
        let mut o = sys::NK_BN_OPTIONS_INIT;
        unsafe { sys::nk_bn_options_init(&mut o) };
        BnOptions(o)
    }
}

impl BnOptions {
    /// PyTorch's conventions: epsilon 1e-5, momentum 0.1 on the new value,
    /// unbiased moving variance.
    pub fn torch() -> Self {
        BnOptions::default().epsilon(1e-5).momentum(0.1).convention(Momentum::Torch).unbiased_moving_variance(true)
    }
    pub fn epsilon(mut self, e: f32) -> Self {
        self.0.epsilon = e;
        self
    }
    pub fn momentum(mut self, m: f32) -> Self {
        self.0.momentum = m;
        self
    }
    pub fn convention(mut self, c: Momentum) -> Self {
        self.0.momentum_convention = match c {
            Momentum::Tf => sys::NK_MOMENTUM_TF,
            Momentum::Torch => sys::NK_MOMENTUM_TORCH,
        };
        self
    }
    pub fn unbiased_moving_variance(mut self, yes: bool) -> Self {
        self.0.moving_variance = if yes { sys::NK_VARIANCE_UNBIASED } else { sys::NK_VARIANCE_BIASED };
        self
    }
    /// Ghost Batch Norm with virtual batches of `v` samples (0: off).
    pub fn virtual_batch(mut self, v: i32, grouping: Grouping) -> Self {
        self.0.virtual_batch_size = v;
        self.0.virtual_grouping = match grouping {
            Grouping::Strided => sys::NK_GHOST_STRIDED,
            Grouping::Contiguous => sys::NK_GHOST_CONTIGUOUS,
        };
        self
    }
    /// Batch Renormalization with its momentum and clipping (None: unclipped).
    pub fn renorm(mut self, momentum: f32, rmax: Option<f32>, rmin: Option<f32>, dmax: Option<f32>) -> Self {
        self.0.renorm = 1;
        self.0.renorm_momentum = momentum;
        self.0.rmax = rmax.unwrap_or(f32::INFINITY);
        self.0.rmin = rmin.unwrap_or(0.0);
        self.0.dmax = dmax.unwrap_or(f32::INFINITY);
        self
    }
    /// G, the number of virtual batches for a batch of `n` samples (1 when
    /// off, or when V does not divide n: the call then fails in C).
    pub fn groups(&self, n: i64) -> usize {
        let v = self.0.virtual_batch_size as i64;
        if v > 0 && n % v == 0 {
            (n / v) as usize
        } else {
            1
        }
    }
}

// ---- Batch Norm ----------------------------------------------------------------------

/// (mean, invstd) saved by a training forward for its backward: G*C floats each.
pub struct Saved<'a> {
    pub mean: &'a mut [f32],
    pub invstd: &'a mut [f32],
}

/// Training forward: y from the batch statistics; `saved` receives mean and
/// invstd (G*C floats each); `moving` = (mean, var) is updated in place.
#[allow(clippy::too_many_arguments)]
pub fn bn_forward_training(
    layout: &Layout,
    opt: &BnOptions,
    x: &[f32],
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    saved: Option<Saved>,
    moving: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let c = layout.channels();
    let gc = opt.groups(layout.batch()) * c;
    let g = opt_ptr("gamma", gamma, c)?;
    let b = opt_ptr("beta", beta, c)?;
    let (sm, si) = match saved {
        Some(s) => (opt_mut("saved mean", Some(s.mean), gc)?, opt_mut("saved invstd", Some(s.invstd), gc)?),
        None => (null_mut(), null_mut()),
    };
    let (mm, mv) = match moving {
        Some((m, v)) => (opt_mut("moving mean", Some(m), c)?, opt_mut("moving var", Some(v), c)?),
        None => (null_mut(), null_mut()),
    };
    check(unsafe {
        sys::nk_bn_forward_training(layout.raw(), &opt.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), g, b, sm, si, mm, mv)
    })
}

/// [`bn_forward_training`] in place: `xy` holds x and receives y.
#[allow(clippy::too_many_arguments)]
pub fn bn_forward_training_in_place(
    layout: &Layout,
    opt: &BnOptions,
    xy: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    saved: Option<Saved>,
    moving: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("xy", xy.len())?;
    let c = layout.channels();
    let gc = opt.groups(layout.batch()) * c;
    let g = opt_ptr("gamma", gamma, c)?;
    let b = opt_ptr("beta", beta, c)?;
    let (sm, si) = match saved {
        Some(s) => (opt_mut("saved mean", Some(s.mean), gc)?, opt_mut("saved invstd", Some(s.invstd), gc)?),
        None => (null_mut(), null_mut()),
    };
    let (mm, mv) = match moving {
        Some((m, v)) => (opt_mut("moving mean", Some(m), c)?, opt_mut("moving var", Some(v), c)?),
        None => (null_mut(), null_mut()),
    };
    let p = xy.as_mut_ptr();
    check(unsafe { sys::nk_bn_forward_training(layout.raw(), &opt.raw(), p as *const c_void, p.cast(), g, b, sm, si, mm, mv) })
}

/// [`bn_backward`] in place: `dy_dx` holds dy and receives dx.
#[allow(clippy::too_many_arguments)]
pub fn bn_backward_in_place(
    layout: &Layout,
    opt: &BnOptions,
    x: &[f32],
    dy_dx: &mut [f32],
    gamma: Option<&[f32]>,
    saved_mean: &[f32],
    saved_invstd: &[f32],
    grads: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy_dx", dy_dx.len())?;
    let c = layout.channels();
    let gc = opt.groups(layout.batch()) * c;
    let g = opt_ptr("gamma", gamma, c)?;
    let (sm, si) = (opt_ptr("saved mean", Some(saved_mean), gc)?, opt_ptr("saved invstd", Some(saved_invstd), gc)?);
    let (dg, db) = match grads {
        Some((a, b)) => (opt_mut("dgamma", Some(a), c)?, opt_mut("dbeta", Some(b), c)?),
        None => (null_mut(), null_mut()),
    };
    let p = dy_dx.as_mut_ptr();
    check(unsafe { sys::nk_bn_backward(layout.raw(), &opt.raw(), x.as_ptr().cast(), p as *const c_void, g, sm, si, p.cast(), dg, db) })
}

/// Inference forward with the moving statistics.
#[allow(clippy::too_many_arguments)]
pub fn bn_forward_inference(
    layout: &Layout,
    opt: &BnOptions,
    x: &[f32],
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    moving_mean: &[f32],
    moving_var: &[f32],
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let c = layout.channels();
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let (mm, mv) = (opt_ptr("moving mean", Some(moving_mean), c)?, opt_ptr("moving var", Some(moving_var), c)?);
    check(unsafe { sys::nk_bn_forward_inference(layout.raw(), &opt.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), g, b, mm, mv) })
}

/// Training backward: dx, and (dgamma, dbeta) when `grads` is given.
#[allow(clippy::too_many_arguments)]
pub fn bn_backward(
    layout: &Layout,
    opt: &BnOptions,
    x: &[f32],
    dy: &[f32],
    gamma: Option<&[f32]>,
    saved_mean: &[f32],
    saved_invstd: &[f32],
    dx: &mut [f32],
    grads: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    layout.check_tensor("dx", dx.len())?;
    let c = layout.channels();
    let gc = opt.groups(layout.batch()) * c;
    let g = opt_ptr("gamma", gamma, c)?;
    let (sm, si) = (opt_ptr("saved mean", Some(saved_mean), gc)?, opt_ptr("saved invstd", Some(saved_invstd), gc)?);
    let (dg, db) = match grads {
        Some((a, b)) => (opt_mut("dgamma", Some(a), c)?, opt_mut("dbeta", Some(b), c)?),
        None => (null_mut(), null_mut()),
    };
    check(unsafe {
        sys::nk_bn_backward(layout.raw(), &opt.raw(), x.as_ptr().cast(), dy.as_ptr().cast(), g, sm, si, dx.as_mut_ptr().cast(), dg, db)
    })
}

/// The arrays of `nk_bn_state` (None where unused); see normkit.h.
#[derive(Default)]
pub struct BnState<'a> {
    pub moving_mean: Option<&'a mut [f32]>,
    pub moving_var: Option<&'a mut [f32]>,
    pub moving_stddev: Option<&'a mut [f32]>,
    pub renorm_mean: Option<&'a mut [f32]>,
    pub renorm_stddev: Option<&'a mut [f32]>,
    pub adjustment_scale: Option<&'a [f32]>,
    pub adjustment_bias: Option<&'a [f32]>,
    /// G*C floats.
    pub saved_mean: Option<&'a mut [f32]>,
    /// G*C floats.
    pub saved_invstd: Option<&'a mut [f32]>,
    pub saved_r: Option<&'a mut [f32]>,
    pub saved_d: Option<&'a mut [f32]>,
}

impl BnState<'_> {
    /// The C struct over these slices, after checking their lengths.
    pub fn to_raw(&mut self, c: usize, g: usize) -> Result<sys::nk_bn_state> {
        fn m(name: &str, a: &mut Option<&mut [f32]>, n: usize) -> Result<*mut f32> {
            opt_mut(name, a.as_deref_mut(), n)
        }
        let mut s = sys::nk_bn_state::empty();
        s.moving_mean = m("moving_mean", &mut self.moving_mean, c)?;
        s.moving_var = m("moving_var", &mut self.moving_var, c)?;
        s.moving_stddev = m("moving_stddev", &mut self.moving_stddev, c)?;
        s.renorm_mean = m("renorm_mean", &mut self.renorm_mean, c)?;
        s.renorm_stddev = m("renorm_stddev", &mut self.renorm_stddev, c)?;
        s.adjustment_scale = opt_ptr("adjustment_scale", self.adjustment_scale, c)?;
        s.adjustment_bias = opt_ptr("adjustment_bias", self.adjustment_bias, c)?;
        s.saved_mean = m("saved_mean", &mut self.saved_mean, g * c)?;
        s.saved_invstd = m("saved_invstd", &mut self.saved_invstd, g * c)?;
        s.saved_r = m("saved_r", &mut self.saved_r, c)?;
        s.saved_d = m("saved_d", &mut self.saved_d, c)?;
        Ok(s)
    }
}

/// Training forward with every option (renorm, virtual batches, adjustment).
pub fn bn_forward_training_ex(
    layout: &Layout,
    opt: &BnOptions,
    x: &[f32],
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    state: &mut BnState,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let c = layout.channels();
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let mut s = state.to_raw(c, opt.groups(layout.batch()))?;
    check(unsafe { sys::nk_bn_forward_training_ex(layout.raw(), &opt.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), g, b, &mut s) })
}

/// Backward of [`bn_forward_training_ex`] from the state's saved arrays.
#[allow(clippy::too_many_arguments)]
pub fn bn_backward_ex(
    layout: &Layout,
    opt: &BnOptions,
    x: &[f32],
    dy: &[f32],
    gamma: Option<&[f32]>,
    state: &mut BnState,
    dx: &mut [f32],
    grads: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    layout.check_tensor("dx", dx.len())?;
    let c = layout.channels();
    let g = opt_ptr("gamma", gamma, c)?;
    let s = state.to_raw(c, opt.groups(layout.batch()))?;
    let (dg, db) = match grads {
        Some((a, b)) => (opt_mut("dgamma", Some(a), c)?, opt_mut("dbeta", Some(b), c)?),
        None => (null_mut(), null_mut()),
    };
    check(unsafe {
        sys::nk_bn_backward_ex(layout.raw(), &opt.raw(), x.as_ptr().cast(), dy.as_ptr().cast(), g, &s, dx.as_mut_ptr().cast(), dg, db)
    })
}

// ---- split statistics (Sync Batch Norm) -------------------------------------------

/// Partial statistics of one part of a batch: returns the count and fills
/// mean and m2 (C doubles each).
pub fn bn_partial_stats(layout: &Layout, x: &[f32], mean: &mut [f64], m2: &mut [f64]) -> Result<i64> {
    layout.check_tensor("x", x.len())?;
    check_len("mean", mean.len(), layout.channels())?;
    check_len("m2", m2.len(), layout.channels())?;
    let mut count = 0i64;
    check(unsafe { sys::nk_bn_partial_stats(layout.raw(), x.as_ptr().cast(), &mut count, mean.as_mut_ptr(), m2.as_mut_ptr()) })?;
    Ok(count)
}

/// Merges P = counts.len() partials (means, m2s: P rows of C); returns the count.
pub fn bn_merge_stats(counts: &[i64], means: &[f64], m2s: &[f64], mean: &mut [f64], m2: &mut [f64]) -> Result<i64> {
    let c = mean.len();
    check_len("m2", m2.len(), c)?;
    check_len("means", means.len(), counts.len() * c)?;
    check_len("m2s", m2s.len(), counts.len() * c)?;
    let mut count = 0i64;
    check(unsafe {
        sys::nk_bn_merge_stats(c as i64, counts.len() as i64, counts.as_ptr(), means.as_ptr(), m2s.as_ptr(), &mut count, mean.as_mut_ptr(), m2.as_mut_ptr())
    })?;
    Ok(count)
}

/// mean and invstd (float) from merged statistics; `moving` updated in place.
pub fn bn_finalize_stats(
    opt: &BnOptions,
    count: i64,
    mean: &[f64],
    m2: &[f64],
    mean_out: &mut [f32],
    invstd_out: &mut [f32],
    moving: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    let c = mean.len();
    check_len("m2", m2.len(), c)?;
    check_len("mean_out", mean_out.len(), c)?;
    check_len("invstd_out", invstd_out.len(), c)?;
    let (mm, mv) = match moving {
        Some((m, v)) => (opt_mut("moving mean", Some(m), c)?, opt_mut("moving var", Some(v), c)?),
        None => (null_mut(), null_mut()),
    };
    check(unsafe {
        sys::nk_bn_finalize_stats(c as i64, &opt.raw(), count, mean.as_ptr(), m2.as_ptr(), mean_out.as_mut_ptr(), invstd_out.as_mut_ptr(), mm, mv)
    })
}

/// The merged mean the apply and backward steps of split statistics take:
/// `f32` (the saved float mean), or the `f64` that [`bn_merge_stats`] gives,
/// which the C library's `*_mean64` entry points take. A float mean is off by
/// up to half its ulp, which moves xhat by that over the standard deviation
/// where the mean is large against the spread; the f64 one is not.
pub trait SplitMean: sealed::Sealed + Copy {
    #[doc(hidden)]
    unsafe fn nk_apply(d: *const sys::nk_tensor_desc, x: *const c_void, y: *mut c_void, g: *const f32, b: *const f32, mean: *const Self, invstd: *const f32) -> sys::nk_status;
    #[doc(hidden)]
    unsafe fn nk_backward_reduce(d: *const sys::nk_tensor_desc, x: *const c_void, dy: *const c_void, mean: *const Self, invstd: *const f32, s1: *mut f64, s2: *mut f64) -> sys::nk_status;
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn nk_backward_apply(d: *const sys::nk_tensor_desc, count: i64, x: *const c_void, dy: *const c_void, g: *const f32, mean: *const Self, invstd: *const f32, s1: *const f64, s2: *const f64, dx: *mut c_void) -> sys::nk_status;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

// Each mean type calls its own three C entry points.
macro_rules! split_mean {
    ($t:ty, $apply:ident, $reduce:ident, $backward:ident) => {
        impl SplitMean for $t {
            unsafe fn nk_apply(d: *const sys::nk_tensor_desc, x: *const c_void, y: *mut c_void, g: *const f32, b: *const f32, mean: *const $t, invstd: *const f32) -> sys::nk_status {
                sys::$apply(d, x, y, g, b, mean, invstd)
            }
            unsafe fn nk_backward_reduce(d: *const sys::nk_tensor_desc, x: *const c_void, dy: *const c_void, mean: *const $t, invstd: *const f32, s1: *mut f64, s2: *mut f64) -> sys::nk_status {
                sys::$reduce(d, x, dy, mean, invstd, s1, s2)
            }
            unsafe fn nk_backward_apply(d: *const sys::nk_tensor_desc, count: i64, x: *const c_void, dy: *const c_void, g: *const f32, mean: *const $t, invstd: *const f32, s1: *const f64, s2: *const f64, dx: *mut c_void) -> sys::nk_status {
                sys::$backward(d, count, x, dy, g, mean, invstd, s1, s2, dx)
            }
        }
    };
}
split_mean!(f32, nk_bn_apply, nk_bn_backward_reduce, nk_bn_backward_apply);
split_mean!(f64, nk_bn_apply_mean64, nk_bn_backward_reduce_mean64, nk_bn_backward_apply_mean64);

/// y = gamma * (x - mean) * invstd + beta on this part; `mean` f32 or f64
/// ([`SplitMean`]).
#[allow(clippy::too_many_arguments)]
pub fn bn_apply<M: SplitMean>(layout: &Layout, x: &[f32], y: &mut [f32], gamma: Option<&[f32]>, beta: Option<&[f32]>, mean: &[M], invstd: &[f32]) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let c = layout.channels();
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    check_len("mean", mean.len(), c)?;
    let i = opt_ptr("invstd", Some(invstd), c)?;
    check(unsafe { M::nk_apply(layout.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), g, b, mean.as_ptr(), i) })
}

/// sum(dy) and sum(dy * xhat) of this part (to be summed over all parts;
/// they are also dbeta and dgamma); `mean` f32 or f64 ([`SplitMean`]).
pub fn bn_backward_reduce<M: SplitMean>(layout: &Layout, x: &[f32], dy: &[f32], mean: &[M], invstd: &[f32], sum_dy: &mut [f64], sum_dy_xhat: &mut [f64]) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    let c = layout.channels();
    check_len("mean", mean.len(), c)?;
    let i = opt_ptr("invstd", Some(invstd), c)?;
    check_len("sum_dy", sum_dy.len(), c)?;
    check_len("sum_dy_xhat", sum_dy_xhat.len(), c)?;
    check(unsafe {
        M::nk_backward_reduce(layout.raw(), x.as_ptr().cast(), dy.as_ptr().cast(), mean.as_ptr(), i, sum_dy.as_mut_ptr(), sum_dy_xhat.as_mut_ptr())
    })
}

/// dx of this part from the summed reductions; `count` = elements per
/// feature over all parts; `mean` f32 or f64 ([`SplitMean`]).
#[allow(clippy::too_many_arguments)]
pub fn bn_backward_apply<M: SplitMean>(
    layout: &Layout,
    count: i64,
    x: &[f32],
    dy: &[f32],
    gamma: Option<&[f32]>,
    mean: &[M],
    invstd: &[f32],
    sum_dy: &[f64],
    sum_dy_xhat: &[f64],
    dx: &mut [f32],
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    layout.check_tensor("dx", dx.len())?;
    let c = layout.channels();
    let g = opt_ptr("gamma", gamma, c)?;
    check_len("mean", mean.len(), c)?;
    let i = opt_ptr("invstd", Some(invstd), c)?;
    check_len("sum_dy", sum_dy.len(), c)?;
    check_len("sum_dy_xhat", sum_dy_xhat.len(), c)?;
    check(unsafe {
        M::nk_backward_apply(layout.raw(), count, x.as_ptr().cast(), dy.as_ptr().cast(), g, mean.as_ptr(), i, sum_dy.as_ptr(), sum_dy_xhat.as_ptr(), dx.as_mut_ptr().cast::<c_void>())
    })
}

/// [`bn_apply`] with the merged mean in double (`nk_bn_apply_mean64`).
#[allow(clippy::too_many_arguments)]
pub fn bn_apply_mean64(layout: &Layout, x: &[f32], y: &mut [f32], gamma: Option<&[f32]>, beta: Option<&[f32]>, mean: &[f64], invstd: &[f32]) -> Result<()> {
    bn_apply(layout, x, y, gamma, beta, mean, invstd)
}

/// [`bn_backward_reduce`] with the merged mean in double.
pub fn bn_backward_reduce_mean64(layout: &Layout, x: &[f32], dy: &[f32], mean: &[f64], invstd: &[f32], sum_dy: &mut [f64], sum_dy_xhat: &mut [f64]) -> Result<()> {
    bn_backward_reduce(layout, x, dy, mean, invstd, sum_dy, sum_dy_xhat)
}

/// [`bn_backward_apply`] with the merged mean in double.
#[allow(clippy::too_many_arguments)]
pub fn bn_backward_apply_mean64(layout: &Layout, count: i64, x: &[f32], dy: &[f32], gamma: Option<&[f32]>, mean: &[f64], invstd: &[f32], sum_dy: &[f64], sum_dy_xhat: &[f64], dx: &mut [f32]) -> Result<()> {
    bn_backward_apply(layout, count, x, dy, gamma, mean, invstd, sum_dy, sum_dy_xhat, dx)
}

// ---- layer --------------------------------------------------------------------------

/// A Batch Norm layer holding its variables as tf.keras does: gamma = 1,
/// beta = 0, moving mean 0, moving variance 1, `trainable` true.
///
/// TF2 rule: a layer with `trainable == false` (frozen) always runs in
/// inference mode: [`forward_training`](Self::forward_training) on it runs the
/// inference forward and leaves the moving statistics alone.
///
/// [`backward`](Self::backward) follows the mode of the last forward:
/// - after a training-mode forward, Batch Norm's training gradient (through the
///   batch statistics saved by that forward);
/// - after an inference-mode forward ([`forward_inference`](Self::forward_inference),
///   or `forward_training` on a frozen layer), or before any forward, the
///   gradient of the inference forward, where the moving statistics are
///   constants: dx = dy * gamma / sqrt(moving_var + epsilon) per feature,
///   dbeta = sum(dy), dgamma = sum(dy * (x - moving_mean) / sqrt(moving_var + epsilon)).
///
/// A frozen layer (`trainable` false when backward runs) gets empty
/// `dgamma` and `dbeta` in its [`Grads`] (TF computes none).
pub struct BatchNorm {
    pub options: BnOptions,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub moving_mean: Vec<f32>,
    pub moving_var: Vec<f32>,
    /// TF's `trainable` (default true). False: the layer is frozen — it runs in
    /// inference mode even through `forward_training`, and backward gives no
    /// dgamma, dbeta.
    pub trainable: bool,
    saved_mean: Vec<f32>,
    saved_invstd: Vec<f32>,
    // Whether the last forward ran in training mode (an atomic so that
    // forward_inference keeps taking &self and the layer stays Sync).
    last_training: AtomicBool,
}

/// The gradients of a backward pass. `dgamma` and `dbeta` are empty when the
/// layer is frozen (`BatchNorm::trainable` false), C floats each otherwise.
pub struct Grads {
    pub dx: Vec<f32>,
    pub dgamma: Vec<f32>,
    pub dbeta: Vec<f32>,
}

impl BatchNorm {
    pub fn new(channels: usize) -> Self {
        Self::with_options(channels, BnOptions::default())
    }
    pub fn with_options(channels: usize, options: BnOptions) -> Self {
        BatchNorm {
            options,
            gamma: vec![1.0; channels],
            beta: vec![0.0; channels],
            moving_mean: vec![0.0; channels],
            moving_var: vec![1.0; channels],
            trainable: true,
            saved_mean: Vec::new(),
            saved_invstd: Vec::new(),
            last_training: AtomicBool::new(false),
        }
    }
    /// Training mode: normalizes with the batch statistics, updates the moving
    /// ones, and keeps what backward needs. On a frozen layer (`trainable`
    /// false) this is [`forward_inference`](Self::forward_inference), as in TF2:
    /// the moving statistics are used and left unchanged.
    pub fn forward_training(&mut self, layout: &Layout, x: &[f32]) -> Result<Vec<f32>> {
        if !self.trainable {
            return self.forward_inference(layout, x);
        }
        let gc = self.options.groups(layout.batch()) * layout.channels();
        let mut y = vec![0.0; layout.len()];
        let mut sm = vec![0.0; gc];
        let mut si = vec![0.0; gc];
        bn_forward_training(
            layout,
            &self.options,
            x,
            &mut y,
            Some(&self.gamma),
            Some(&self.beta),
            Some(Saved { mean: &mut sm, invstd: &mut si }),
            Some((&mut self.moving_mean, &mut self.moving_var)),
        )?;
        self.saved_mean = sm;
        self.saved_invstd = si;
        *self.last_training.get_mut() = true;
        Ok(y)
    }
    /// Inference mode: normalizes with the moving statistics; the next
    /// backward is the inference-mode gradient.
    pub fn forward_inference(&self, layout: &Layout, x: &[f32]) -> Result<Vec<f32>> {
        let mut y = vec![0.0; layout.len()];
        bn_forward_inference(layout, &self.options, x, &mut y, Some(&self.gamma), Some(&self.beta), &self.moving_mean, &self.moving_var)?;
        self.last_training.store(false, Ordering::Relaxed);
        Ok(y)
    }
    /// Backward of the last forward (same x), in its mode (see [`BatchNorm`]);
    /// gamma and the moving statistics are read as they are now.
    pub fn backward(&self, layout: &Layout, x: &[f32], dy: &[f32]) -> Result<Grads> {
        let c = layout.channels();
        let n = if self.trainable { c } else { 0 };
        let mut g = Grads { dx: vec![0.0; layout.len()], dgamma: vec![0.0; n], dbeta: vec![0.0; n] };
        let grads = if self.trainable { Some((&mut g.dgamma[..], &mut g.dbeta[..])) } else { None };
        if self.last_training.load(Ordering::Relaxed) && !self.saved_mean.is_empty() {
            bn_backward(layout, &self.options, x, dy, Some(&self.gamma), &self.saved_mean, &self.saved_invstd, &mut g.dx, grads)?;
        } else {
            self.inference_backward(layout, x, dy, &mut g.dx, grads)?;
        }
        Ok(g)
    }
    // The gradient of y = gamma * (x - moving_mean) * invstd + beta with
    // invstd = 1/sqrt(moving_var + epsilon) constant: through bn_backward_apply
    // with zero sums, which leaves dx = gamma * invstd * dy whatever the count
    // (this batch's own, the least the library accepts), and bn_backward_reduce
    // with the same mean and invstd for dbeta = sum(dy), dgamma = sum(dy * xhat).
    fn inference_backward(&self, layout: &Layout, x: &[f32], dy: &[f32], dx: &mut [f32], grads: Option<(&mut [f32], &mut [f32])>) -> Result<()> {
        let c = layout.channels();
        check_len("moving_var", self.moving_var.len(), c)?;
        let eps = self.options.0.epsilon as f64;
        let invstd: Vec<f32> = self.moving_var.iter().map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32).collect();
        let zeros = vec![0.0f64; c];
        let count = (layout.len() / c.max(1)) as i64;
        bn_backward_apply(layout, count, x, dy, Some(&self.gamma), &self.moving_mean[..], &invstd, &zeros, &zeros, dx)?;
        if let Some((dgamma, dbeta)) = grads {
            let (mut sum_dy, mut sum_dy_xhat) = (vec![0.0f64; c], vec![0.0f64; c]);
            bn_backward_reduce(layout, x, dy, &self.moving_mean[..], &invstd, &mut sum_dy, &mut sum_dy_xhat)?;
            for k in 0..c {
                dgamma[k] = sum_dy_xhat[k] as f32;
                dbeta[k] = sum_dy[k] as f32;
            }
        }
        Ok(())
    }
}

// ---- Group, Instance, Layer, RMS and Switchable Norm -----------------------------

fn pair_mut<'a>(names: (&str, &str), p: Option<(&'a mut [f32], &'a mut [f32])>, n: usize) -> Result<(*mut f32, *mut f32)> {
    match p {
        Some((a, b)) => Ok((opt_mut(names.0, Some(a), n)?, opt_mut(names.1, Some(b), n)?)),
        None => Ok((null_mut(), null_mut())),
    }
}

fn saved_mut(s: Option<Saved>, n: usize) -> Result<(*mut f32, *mut f32)> {
    pair_mut(("saved mean", "saved invstd"), s.map(|s| (s.mean, s.invstd)), n)
}

fn rows(layout: &Layout) -> usize {
    layout.len() / layout.channels().max(1)
}

/// Group Norm options: epsilon 1e-5, groups 32.
/// `struct_size` is ignored: each call passes the crate's own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GnOptions(pub sys::nk_gn_options);
impl Default for GnOptions {
    fn default() -> Self {
        let mut o = sys::NK_GN_OPTIONS_INIT;
        unsafe { sys::nk_gn_options_init(&mut o) };
        GnOptions(o)
    }
}
impl GnOptions {
    pub fn epsilon(mut self, e: f32) -> Self {
        self.0.epsilon = e;
        self
    }
    pub fn groups(mut self, g: i32) -> Self {
        self.0.groups = g;
        self
    }
}

/// Instance Norm options: PyTorch's (epsilon 1e-5, momentum 0.1, unbiased moving variance).
/// `struct_size` is ignored: each call passes the crate's own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InOptions(pub sys::nk_in_options);
impl Default for InOptions {
    fn default() -> Self {
        let mut o = sys::NK_IN_OPTIONS_INIT;
        unsafe { sys::nk_in_options_init(&mut o) };
        InOptions(o)
    }
}
impl InOptions {
    pub fn epsilon(mut self, e: f32) -> Self {
        self.0.epsilon = e;
        self
    }
    pub fn momentum(mut self, m: f32) -> Self {
        self.0.momentum = m;
        self
    }
    pub fn convention(mut self, c: Momentum) -> Self {
        self.0.momentum_convention = match c {
            Momentum::Tf => sys::NK_MOMENTUM_TF,
            Momentum::Torch => sys::NK_MOMENTUM_TORCH,
        };
        self
    }
    pub fn unbiased_moving_variance(mut self, yes: bool) -> Self {
        self.0.moving_variance = if yes { sys::NK_VARIANCE_UNBIASED } else { sys::NK_VARIANCE_BIASED };
        self
    }
}

/// Layer Norm / RMSNorm options: epsilon 1e-5.
/// `struct_size` is ignored: each call passes the crate's own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LnOptions(pub sys::nk_ln_options);
impl Default for LnOptions {
    fn default() -> Self {
        let mut o = sys::NK_LN_OPTIONS_INIT;
        unsafe { sys::nk_ln_options_init(&mut o) };
        LnOptions(o)
    }
}
impl LnOptions {
    pub fn epsilon(mut self, e: f32) -> Self {
        self.0.epsilon = e;
        self
    }
}

/// Switchable Norm options: epsilon 1e-5, momentum 0.997, with BN.
/// `struct_size` is ignored: each call passes the crate's own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SnOptions(pub sys::nk_sn_options);
impl Default for SnOptions {
    fn default() -> Self {
        let mut o = sys::NK_SN_OPTIONS_INIT;
        unsafe { sys::nk_sn_options_init(&mut o) };
        SnOptions(o)
    }
}
impl SnOptions {
    pub fn epsilon(mut self, e: f32) -> Self {
        self.0.epsilon = e;
        self
    }
    pub fn momentum(mut self, m: f32) -> Self {
        self.0.momentum = m;
        self
    }
    pub fn use_bn(mut self, yes: bool) -> Self {
        self.0.use_bn = yes as i32;
        self
    }
    /// The number of mixing weights: 3 (IN, LN, BN) or 2 (IN, LN).
    pub fn num_weights(&self) -> usize {
        if self.0.use_bn != 0 { 3 } else { 2 }
    }
}

/// Group Norm forward; `saved` receives mean and invstd (N*G floats each).
/// Axis 0 of the layout is the batch, its one feature axis the channels.
pub fn group_norm_forward(
    layout: &Layout,
    opt: &GnOptions,
    x: &[f32],
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    saved: Option<Saved>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let c = layout.channels();
    let ng = layout.batch() as usize * opt.0.groups.max(0) as usize;
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let (sm, si) = saved_mut(saved, ng)?;
    check(unsafe { sys::nk_groupnorm_forward(layout.raw(), &opt.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), g, b, sm, si) })
}

/// Group Norm backward: dx, and (dgamma, dbeta) when `grads` is given.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward(
    layout: &Layout,
    opt: &GnOptions,
    x: &[f32],
    dy: &[f32],
    gamma: Option<&[f32]>,
    saved_mean: &[f32],
    saved_invstd: &[f32],
    dx: &mut [f32],
    grads: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    layout.check_tensor("dx", dx.len())?;
    let c = layout.channels();
    let ng = layout.batch() as usize * opt.0.groups.max(0) as usize;
    let g = opt_ptr("gamma", gamma, c)?;
    let (sm, si) = (opt_ptr("saved mean", Some(saved_mean), ng)?, opt_ptr("saved invstd", Some(saved_invstd), ng)?);
    let (dg, db) = pair_mut(("dgamma", "dbeta"), grads, c)?;
    check(unsafe {
        sys::nk_groupnorm_backward(layout.raw(), &opt.raw(), x.as_ptr().cast(), dy.as_ptr().cast(), g, sm, si, dx.as_mut_ptr().cast(), dg, db)
    })
}

/// Instance Norm training forward; `saved` N*C floats each; `moving` updated.
#[allow(clippy::too_many_arguments)]
pub fn instance_norm_forward_training(
    layout: &Layout,
    opt: &InOptions,
    x: &[f32],
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    saved: Option<Saved>,
    moving: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let c = layout.channels();
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let (sm, si) = saved_mut(saved, layout.batch() as usize * c)?;
    let (mm, mv) = pair_mut(("moving mean", "moving var"), moving, c)?;
    check(unsafe {
        sys::nk_instancenorm_forward_training(layout.raw(), &opt.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), g, b, sm, si, mm, mv)
    })
}

/// Instance Norm inference forward with the moving statistics.
#[allow(clippy::too_many_arguments)]
pub fn instance_norm_forward_inference(
    layout: &Layout,
    opt: &InOptions,
    x: &[f32],
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    moving_mean: &[f32],
    moving_var: &[f32],
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let c = layout.channels();
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let (mm, mv) = (opt_ptr("moving mean", Some(moving_mean), c)?, opt_ptr("moving var", Some(moving_var), c)?);
    check(unsafe { sys::nk_instancenorm_forward_inference(layout.raw(), &opt.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), g, b, mm, mv) })
}

/// Instance Norm backward.
#[allow(clippy::too_many_arguments)]
pub fn instance_norm_backward(
    layout: &Layout,
    opt: &InOptions,
    x: &[f32],
    dy: &[f32],
    gamma: Option<&[f32]>,
    saved_mean: &[f32],
    saved_invstd: &[f32],
    dx: &mut [f32],
    grads: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    layout.check_tensor("dx", dx.len())?;
    let c = layout.channels();
    let nc = layout.batch() as usize * c;
    let g = opt_ptr("gamma", gamma, c)?;
    let (sm, si) = (opt_ptr("saved mean", Some(saved_mean), nc)?, opt_ptr("saved invstd", Some(saved_invstd), nc)?);
    let (dg, db) = pair_mut(("dgamma", "dbeta"), grads, c)?;
    check(unsafe {
        sys::nk_instancenorm_backward(layout.raw(), &opt.raw(), x.as_ptr().cast(), dy.as_ptr().cast(), g, sm, si, dx.as_mut_ptr().cast(), dg, db)
    })
}

/// Layer Norm forward over rows of D elements (D the product of the layout's
/// trailing feature axes); `saved` R = len / D floats each.
pub fn layer_norm_forward(
    layout: &Layout,
    opt: &LnOptions,
    x: &[f32],
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    saved: Option<Saved>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let d = layout.channels();
    let (g, b) = (opt_ptr("gamma", gamma, d)?, opt_ptr("beta", beta, d)?);
    let (sm, si) = saved_mut(saved, rows(layout))?;
    check(unsafe { sys::nk_layernorm_forward(layout.raw(), &opt.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), g, b, sm, si) })
}

/// Layer Norm backward.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    layout: &Layout,
    opt: &LnOptions,
    x: &[f32],
    dy: &[f32],
    gamma: Option<&[f32]>,
    saved_mean: &[f32],
    saved_invstd: &[f32],
    dx: &mut [f32],
    grads: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    layout.check_tensor("dx", dx.len())?;
    let (d, r) = (layout.channels(), rows(layout));
    let g = opt_ptr("gamma", gamma, d)?;
    let (sm, si) = (opt_ptr("saved mean", Some(saved_mean), r)?, opt_ptr("saved invstd", Some(saved_invstd), r)?);
    let (dg, db) = pair_mut(("dgamma", "dbeta"), grads, d)?;
    check(unsafe {
        sys::nk_layernorm_backward(layout.raw(), &opt.raw(), x.as_ptr().cast(), dy.as_ptr().cast(), g, sm, si, dx.as_mut_ptr().cast(), dg, db)
    })
}

/// RMSNorm forward; `saved_rstd` R floats.
pub fn rms_norm_forward(
    layout: &Layout,
    opt: &LnOptions,
    x: &[f32],
    y: &mut [f32],
    gamma: Option<&[f32]>,
    saved_rstd: Option<&mut [f32]>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let g = opt_ptr("gamma", gamma, layout.channels())?;
    let rs = opt_mut("saved rstd", saved_rstd, rows(layout))?;
    check(unsafe { sys::nk_rmsnorm_forward(layout.raw(), &opt.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), g, rs) })
}

/// RMSNorm backward: dx, and dgamma when given.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward(
    layout: &Layout,
    opt: &LnOptions,
    x: &[f32],
    dy: &[f32],
    gamma: Option<&[f32]>,
    saved_rstd: &[f32],
    dx: &mut [f32],
    dgamma: Option<&mut [f32]>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    layout.check_tensor("dx", dx.len())?;
    let d = layout.channels();
    let g = opt_ptr("gamma", gamma, d)?;
    let rs = opt_ptr("saved rstd", Some(saved_rstd), rows(layout))?;
    let dg = opt_mut("dgamma", dgamma, d)?;
    check(unsafe { sys::nk_rmsnorm_backward(layout.raw(), &opt.raw(), x.as_ptr().cast(), dy.as_ptr().cast(), g, rs, dx.as_mut_ptr().cast(), dg) })
}

/// Switchable Norm training forward. `mean_weight`, `var_weight`: the raw
/// mixing weights (opt.num_weights() each); `moving` updated with the BN part.
#[allow(clippy::too_many_arguments)]
pub fn switch_norm_forward_training(
    layout: &Layout,
    opt: &SnOptions,
    x: &[f32],
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    mean_weight: &[f32],
    var_weight: &[f32],
    moving: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let (c, k) = (layout.channels(), opt.num_weights());
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let (mw, vw) = (opt_ptr("mean_weight", Some(mean_weight), k)?, opt_ptr("var_weight", Some(var_weight), k)?);
    let (mm, mv) = pair_mut(("moving mean", "moving var"), moving, c)?;
    check(unsafe {
        sys::nk_switchnorm_forward_training(layout.raw(), &opt.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), g, b, mw, vw, mm, mv)
    })
}

/// Switchable Norm inference forward (`moving` required with BN).
#[allow(clippy::too_many_arguments)]
pub fn switch_norm_forward_inference(
    layout: &Layout,
    opt: &SnOptions,
    x: &[f32],
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    mean_weight: &[f32],
    var_weight: &[f32],
    moving: Option<(&[f32], &[f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let (c, k) = (layout.channels(), opt.num_weights());
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let (mw, vw) = (opt_ptr("mean_weight", Some(mean_weight), k)?, opt_ptr("var_weight", Some(var_weight), k)?);
    let (mm, mv) = match moving {
        Some((m, v)) => (opt_ptr("moving mean", Some(m), c)?, opt_ptr("moving var", Some(v), c)?),
        None => (null(), null()),
    };
    check(unsafe {
        sys::nk_switchnorm_forward_inference(layout.raw(), &opt.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), g, b, mw, vw, mm, mv)
    })
}

/// Gradients of Switchable Norm's parameters: dgamma, dbeta ([C]),
/// dmean_weight, dvar_weight (opt.num_weights()).
pub struct SnGrads<'a> {
    pub dgamma: &'a mut [f32],
    pub dbeta: &'a mut [f32],
    pub dmean_weight: &'a mut [f32],
    pub dvar_weight: &'a mut [f32],
}

/// Switchable Norm backward (statistics recomputed from x).
#[allow(clippy::too_many_arguments)]
pub fn switch_norm_backward(
    layout: &Layout,
    opt: &SnOptions,
    x: &[f32],
    dy: &[f32],
    gamma: Option<&[f32]>,
    mean_weight: &[f32],
    var_weight: &[f32],
    dx: &mut [f32],
    grads: Option<SnGrads>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    layout.check_tensor("dx", dx.len())?;
    let (c, k) = (layout.channels(), opt.num_weights());
    let g = opt_ptr("gamma", gamma, c)?;
    let (mw, vw) = (opt_ptr("mean_weight", Some(mean_weight), k)?, opt_ptr("var_weight", Some(var_weight), k)?);
    let (dg, db, dmw, dvw) = match grads {
        Some(s) => (
            opt_mut("dgamma", Some(s.dgamma), c)?,
            opt_mut("dbeta", Some(s.dbeta), c)?,
            opt_mut("dmean_weight", Some(s.dmean_weight), k)?,
            opt_mut("dvar_weight", Some(s.dvar_weight), k)?,
        ),
        None => (null_mut(), null_mut(), null_mut(), null_mut()),
    };
    check(unsafe {
        sys::nk_switchnorm_backward(layout.raw(), &opt.raw(), x.as_ptr().cast(), dy.as_ptr().cast(), g, mw, vw, dx.as_mut_ptr().cast(), dg, db, dmw, dvw)
    })
}

// ---- normalization fused with a residual add and an activation ------------------

/// The activation of the fused ops, y = act(norm(x) + residual): normkit.h's NK_ACT_*.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// None: the norm (+ residual) alone.
    Identity,
    Relu,
    /// LeakyReLU with this slope (finite).
    LeakyRelu(f32),
    /// ELU with this alpha (finite).
    Elu(f32),
    Selu,
}

impl Activation {
    /// The (act, act_param) arguments of the C functions.
    pub fn raw(self) -> (i32, f32) {
        match self {
            Activation::Identity => (sys::NK_ACT_NONE, 0.0),
            Activation::Relu => (sys::NK_ACT_RELU, 0.0),
            Activation::LeakyRelu(slope) => (sys::NK_ACT_LEAKY_RELU, slope),
            Activation::Elu(alpha) => (sys::NK_ACT_ELU, alpha),
            Activation::Selu => (sys::NK_ACT_SELU, 0.0),
        }
    }
}

fn opt_tensor(layout: &Layout, name: &str, a: Option<&[f32]>) -> Result<*const c_void> {
    match a {
        None => Ok(null()),
        Some(a) => layout.check_tensor(name, a.len()).map(|_| a.as_ptr().cast()),
    }
}

fn opt_tensor_mut(layout: &Layout, name: &str, a: Option<&mut [f32]>) -> Result<*mut c_void> {
    match a {
        None => Ok(null_mut()),
        Some(a) => layout.check_tensor(name, a.len()).map(|_| a.as_mut_ptr().cast()),
    }
}

/// y = act(BN(x) + residual) with the batch statistics: [`bn_forward_training_ex`]
/// (every option) with the add and the activation fused in. `residual`: optional,
/// x's length. The state's saved_mean and saved_invstd (G*C floats) are what
/// [`bn_act_backward`] needs.
#[allow(clippy::too_many_arguments)]
pub fn bn_act_forward_training(
    layout: &Layout,
    opt: &BnOptions,
    act: Activation,
    x: &[f32],
    residual: Option<&[f32]>,
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    state: &mut BnState,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let res = opt_tensor(layout, "residual", residual)?;
    let c = layout.channels();
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let mut s = state.to_raw(c, opt.groups(layout.batch()))?;
    let (a, p) = act.raw();
    check(unsafe {
        sys::nk_bn_act_forward_training(layout.raw(), &opt.raw(), a, p, x.as_ptr().cast(), res, y.as_mut_ptr().cast(), g, b, &mut s)
    })
}

/// y = act(BN(x) + residual) with the moving statistics.
#[allow(clippy::too_many_arguments)]
pub fn bn_act_forward_inference(
    layout: &Layout,
    opt: &BnOptions,
    act: Activation,
    x: &[f32],
    residual: Option<&[f32]>,
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    moving_mean: &[f32],
    moving_var: &[f32],
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let res = opt_tensor(layout, "residual", residual)?;
    let c = layout.channels();
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let (mm, mv) = (opt_ptr("moving mean", Some(moving_mean), c)?, opt_ptr("moving var", Some(moving_var), c)?);
    let (a, p) = act.raw();
    check(unsafe {
        sys::nk_bn_act_forward_inference(layout.raw(), &opt.raw(), a, p, x.as_ptr().cast(), res, y.as_mut_ptr().cast(), g, b, mm, mv)
    })
}

/// Backward of [`bn_act_forward_training`], from its x, residual, gamma, beta,
/// activation and state: dx; dresidual = act'(z) * dy when given (only with a
/// residual); (dgamma, dbeta) when `grads` is given.
#[allow(clippy::too_many_arguments)]
pub fn bn_act_backward(
    layout: &Layout,
    opt: &BnOptions,
    act: Activation,
    x: &[f32],
    residual: Option<&[f32]>,
    dy: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    state: &mut BnState,
    dx: &mut [f32],
    dresidual: Option<&mut [f32]>,
    grads: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    layout.check_tensor("dx", dx.len())?;
    let res = opt_tensor(layout, "residual", residual)?;
    let dres = opt_tensor_mut(layout, "dresidual", dresidual)?;
    let c = layout.channels();
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let s = state.to_raw(c, opt.groups(layout.batch()))?;
    let (dg, db) = pair_mut(("dgamma", "dbeta"), grads, c)?;
    let (a, p) = act.raw();
    check(unsafe {
        sys::nk_bn_act_backward(layout.raw(), &opt.raw(), a, p, x.as_ptr().cast(), res, dy.as_ptr().cast(), g, b, &s, dx.as_mut_ptr().cast(), dres, dg, db)
    })
}

/// y = act(GroupNorm(x) + residual); `saved` receives mean and invstd (N*G
/// floats each), as [`group_norm_forward`].
#[allow(clippy::too_many_arguments)]
pub fn group_norm_act_forward(
    layout: &Layout,
    opt: &GnOptions,
    act: Activation,
    x: &[f32],
    residual: Option<&[f32]>,
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    saved: Option<Saved>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    let res = opt_tensor(layout, "residual", residual)?;
    let c = layout.channels();
    let ng = layout.batch() as usize * opt.0.groups.max(0) as usize;
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let (sm, si) = saved_mut(saved, ng)?;
    let (a, p) = act.raw();
    check(unsafe {
        sys::nk_groupnorm_act_forward(layout.raw(), &opt.raw(), a, p, x.as_ptr().cast(), res, y.as_mut_ptr().cast(), g, b, sm, si)
    })
}

/// Backward of [`group_norm_act_forward`]: dx; dresidual when given (only
/// with a residual); (dgamma, dbeta) when `grads` is given.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_act_backward(
    layout: &Layout,
    opt: &GnOptions,
    act: Activation,
    x: &[f32],
    residual: Option<&[f32]>,
    dy: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    saved_mean: &[f32],
    saved_invstd: &[f32],
    dx: &mut [f32],
    dresidual: Option<&mut [f32]>,
    grads: Option<(&mut [f32], &mut [f32])>,
) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    layout.check_tensor("dx", dx.len())?;
    let res = opt_tensor(layout, "residual", residual)?;
    let dres = opt_tensor_mut(layout, "dresidual", dresidual)?;
    let c = layout.channels();
    let ng = layout.batch() as usize * opt.0.groups.max(0) as usize;
    let (g, b) = (opt_ptr("gamma", gamma, c)?, opt_ptr("beta", beta, c)?);
    let (sm, si) = (opt_ptr("saved mean", Some(saved_mean), ng)?, opt_ptr("saved invstd", Some(saved_invstd), ng)?);
    let (dg, db) = pair_mut(("dgamma", "dbeta"), grads, c)?;
    let (a, p) = act.raw();
    check(unsafe {
        sys::nk_groupnorm_act_backward(
            layout.raw(),
            &opt.raw(),
            a,
            p,
            x.as_ptr().cast(),
            res,
            dy.as_ptr().cast(),
            g,
            b,
            sm,
            si,
            dx.as_mut_ptr().cast(),
            dres,
            dg,
            db,
        )
    })
}

// ---- activations (element-wise over slices of equal length) ---------------------

fn same_len(names: &[&str], lens: &[usize]) -> Result<i64> {
    for (n, &l) in names.iter().zip(lens).skip(1) {
        check_len(n, l, lens[0])?;
    }
    Ok(lens[0] as i64)
}

pub fn relu_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    let n = same_len(&["x", "y"], &[x.len(), y.len()])?;
    check(unsafe { sys::nk_relu_forward(n, x.as_ptr(), y.as_mut_ptr()) })
}
pub fn relu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    let n = same_len(&["x", "dy", "dx"], &[x.len(), dy.len(), dx.len()])?;
    check(unsafe { sys::nk_relu_backward(n, x.as_ptr(), dy.as_ptr(), dx.as_mut_ptr()) })
}
pub fn leaky_relu_forward(slope: f32, x: &[f32], y: &mut [f32]) -> Result<()> {
    let n = same_len(&["x", "y"], &[x.len(), y.len()])?;
    check(unsafe { sys::nk_leaky_relu_forward(n, slope, x.as_ptr(), y.as_mut_ptr()) })
}
pub fn leaky_relu_backward(slope: f32, x: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    let n = same_len(&["x", "dy", "dx"], &[x.len(), dy.len(), dx.len()])?;
    check(unsafe { sys::nk_leaky_relu_backward(n, slope, x.as_ptr(), dy.as_ptr(), dx.as_mut_ptr()) })
}
pub fn elu_forward(alpha: f32, x: &[f32], y: &mut [f32]) -> Result<()> {
    let n = same_len(&["x", "y"], &[x.len(), y.len()])?;
    check(unsafe { sys::nk_elu_forward(n, alpha, x.as_ptr(), y.as_mut_ptr()) })
}
pub fn elu_backward(alpha: f32, x: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    let n = same_len(&["x", "dy", "dx"], &[x.len(), dy.len(), dx.len()])?;
    check(unsafe { sys::nk_elu_backward(n, alpha, x.as_ptr(), dy.as_ptr(), dx.as_mut_ptr()) })
}
pub fn selu_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    let n = same_len(&["x", "y"], &[x.len(), y.len()])?;
    check(unsafe { sys::nk_selu_forward(n, x.as_ptr(), y.as_mut_ptr()) })
}
pub fn selu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    let n = same_len(&["x", "dy", "dx"], &[x.len(), dy.len(), dx.len()])?;
    check(unsafe { sys::nk_selu_backward(n, x.as_ptr(), dy.as_ptr(), dx.as_mut_ptr()) })
}
/// SELU's alpha, 1.6732632423543772...
pub fn selu_alpha() -> f64 {
    unsafe { sys::nk_selu_alpha() }
}
/// SELU's lambda, 1.0507009873554804...
pub fn selu_lambda() -> f64 {
    unsafe { sys::nk_selu_lambda() }
}

fn check_slopes(layout: &Layout, slope: &[f32]) -> Result<()> {
    if slope.len() != 1 && slope.len() != layout.channels() {
        return Err(Error::rust(sys::NK_ERR_BAD_SHAPE, format!("slope has {} elements, needs 1 or {}", slope.len(), layout.channels())));
    }
    Ok(())
}

/// PReLU over the layout's feature axes: `slope` C values or 1 (shared).
pub fn prelu_forward(layout: &Layout, x: &[f32], y: &mut [f32], slope: &[f32]) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("y", y.len())?;
    check_slopes(layout, slope)?;
    check(unsafe { sys::nk_prelu_forward(layout.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast(), slope.as_ptr(), slope.len() as i64) })
}
/// PReLU backward: dx, and dslope (slope.len() floats) when given.
pub fn prelu_backward(layout: &Layout, x: &[f32], dy: &[f32], slope: &[f32], dx: &mut [f32], dslope: Option<&mut [f32]>) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dy", dy.len())?;
    layout.check_tensor("dx", dx.len())?;
    check_slopes(layout, slope)?;
    let ds = opt_mut("dslope", dslope, slope.len())?;
    check(unsafe {
        sys::nk_prelu_backward(layout.raw(), x.as_ptr().cast(), dy.as_ptr().cast(), slope.as_ptr(), slope.len() as i64, dx.as_mut_ptr().cast(), ds)
    })
}
/// CReLU: y (2 * len floats: the feature axis doubled) = concat(relu(x), relu(-x)).
pub fn crelu_forward(layout: &Layout, x: &[f32], y: &mut [f32]) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    check_len("y", y.len(), 2 * layout.len())?;
    check(unsafe { sys::nk_crelu_forward(layout.raw(), x.as_ptr().cast(), y.as_mut_ptr().cast()) })
}
/// CReLU backward: dy has y's shape (2 * len floats).
pub fn crelu_backward(layout: &Layout, x: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    layout.check_tensor("x", x.len())?;
    layout.check_tensor("dx", dx.len())?;
    check_len("dy", dy.len(), 2 * layout.len())?;
    check(unsafe { sys::nk_crelu_backward(layout.raw(), x.as_ptr().cast(), dy.as_ptr().cast(), dx.as_mut_ptr().cast()) })
}

// ---- AlphaDropout and LeCun-normal initialization --------------------------------

/// AlphaDropout forward; the same (seed, offset) regenerates the mask in backward.
pub fn alpha_dropout_forward(rate: f32, seed: u64, offset: u64, x: &[f32], y: &mut [f32]) -> Result<()> {
    let n = same_len(&["x", "y"], &[x.len(), y.len()])?;
    check(unsafe { sys::nk_alpha_dropout_forward(n, rate, seed, offset, x.as_ptr(), y.as_mut_ptr()) })
}
pub fn alpha_dropout_backward(rate: f32, seed: u64, offset: u64, dy: &[f32], dx: &mut [f32]) -> Result<()> {
    let n = same_len(&["dy", "dx"], &[dy.len(), dx.len()])?;
    check(unsafe { sys::nk_alpha_dropout_backward(n, rate, seed, offset, dy.as_ptr(), dx.as_mut_ptr()) })
}
/// Fills `w` from LeCun normal N(0, 1/fan_in), or Keras' truncated variant.
pub fn lecun_normal_init(fan_in: i64, truncated: bool, seed: u64, offset: u64, w: &mut [f32]) -> Result<()> {
    let t = if truncated { sys::NK_LECUN_TRUNCATED } else { sys::NK_LECUN_NORMAL };
    check(unsafe { sys::nk_lecun_normal_init(w.len() as i64, fan_in, t, seed, offset, w.as_mut_ptr()) })
}
