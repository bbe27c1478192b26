//! Raw `#[repr(C)]` declarations of every type, constant and function of
//! libnormkit's public C API, `include/normkit.h`. See the `normkit` crate
//! for a safe API. Layouts are checked against C by `tests/layout.rs`.
#![allow(non_camel_case_types)]

use std::os::raw::c_char;

pub const NK_VERSION_MAJOR: i32 = 0;
pub const NK_VERSION_MINOR: i32 = 1;
pub const NK_VERSION_PATCH: i32 = 0;
pub const NK_VERSION: i32 = NK_VERSION_MAJOR * 10000 + NK_VERSION_MINOR * 100 + NK_VERSION_PATCH;

pub type nk_status = i32;
pub const NK_OK: nk_status = 0;
pub const NK_ERR_NULL_POINTER: nk_status = 1;
pub const NK_ERR_BAD_SHAPE: nk_status = 2;
pub const NK_ERR_BAD_AXIS: nk_status = 3;
pub const NK_ERR_BAD_ARGUMENT: nk_status = 4;
pub const NK_ERR_OVERFLOW: nk_status = 5;
pub const NK_ERR_BAD_STRUCT_SIZE: nk_status = 6;
pub const NK_ERR_UNSUPPORTED: nk_status = 7;
pub const NK_ERR_OUT_OF_MEMORY: nk_status = 8;
pub const NK_ERR_BAD_ISA: nk_status = 9;
pub const NK_ERR_INTERNAL: nk_status = 10;

pub const NK_MAX_DIMS: usize = 8;

pub type nk_dtype = i32;
pub const NK_DTYPE_F32: nk_dtype = 0;
pub const NK_DTYPE_BF16: nk_dtype = 1;

pub const NK_MOMENTUM_TF: i32 = 0;
pub const NK_MOMENTUM_TORCH: i32 = 1;
pub const NK_VARIANCE_BIASED: i32 = 0;
pub const NK_VARIANCE_UNBIASED: i32 = 1;
pub const NK_GHOST_STRIDED: i32 = 0;
pub const NK_GHOST_CONTIGUOUS: i32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct nk_tensor_desc {
    pub dtype: nk_dtype,
    pub ndim: i32,
    pub dims: [i64; NK_MAX_DIMS],
    pub num_axes: i32,
    pub axes: [i32; NK_MAX_DIMS],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct nk_bn_options {
    pub struct_size: u64,
    pub epsilon: f32,
    pub momentum: f32,
    pub momentum_convention: i32,
    pub moving_variance: i32,
    pub virtual_batch_size: i32,
    pub virtual_grouping: i32,
    pub renorm: i32,
    pub renorm_momentum: f32,
    pub rmax: f32,
    pub rmin: f32,
    pub dmax: f32,
}

/// The C macro NK_BN_OPTIONS_INIT.
pub const NK_BN_OPTIONS_INIT: nk_bn_options = nk_bn_options {
    struct_size: std::mem::size_of::<nk_bn_options>() as u64,
    epsilon: 1e-3,
    momentum: 0.99,
    momentum_convention: NK_MOMENTUM_TF,
    moving_variance: NK_VARIANCE_BIASED,
    virtual_batch_size: 0,
    virtual_grouping: NK_GHOST_STRIDED,
    renorm: 0,
    renorm_momentum: 0.99,
    rmax: f32::INFINITY,
    rmin: 0.0,
    dmax: f32::INFINITY,
};

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct nk_bn_state {
    pub struct_size: u64,
    pub moving_mean: *mut f32,
    pub moving_var: *mut f32,
    pub moving_stddev: *mut f32,
    pub renorm_mean: *mut f32,
    pub renorm_stddev: *mut f32,
    pub adjustment_scale: *const f32,
    pub adjustment_bias: *const f32,
    pub saved_mean: *mut f32,
    pub saved_invstd: *mut f32,
    pub saved_r: *mut f32,
    pub saved_d: *mut f32,
}

impl nk_bn_state {
    /// What nk_bn_state_init gives: the size, every pointer NULL.
    pub const fn empty() -> Self {
        use std::ptr::{null, null_mut};
        nk_bn_state {
            struct_size: std::mem::size_of::<nk_bn_state>() as u64,
            moving_mean: null_mut(),
            moving_var: null_mut(),
            moving_stddev: null_mut(),
            renorm_mean: null_mut(),
            renorm_stddev: null_mut(),
            adjustment_scale: null(),
            adjustment_bias: null(),
            saved_mean: null_mut(),
            saved_invstd: null_mut(),
            saved_r: null_mut(),
            saved_d: null_mut(),
        }
    }
}

pub const NK_ACT_NONE: i32 = 0;
pub const NK_ACT_RELU: i32 = 1;
pub const NK_ACT_LEAKY_RELU: i32 = 2;
pub const NK_ACT_ELU: i32 = 3;
pub const NK_ACT_SELU: i32 = 4;

pub const NK_LECUN_NORMAL: i32 = 0;
pub const NK_LECUN_TRUNCATED: i32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct nk_gn_options {
    pub struct_size: u64,
    pub epsilon: f32,
    pub groups: i32,
}

/// The C macro NK_GN_OPTIONS_INIT.
pub const NK_GN_OPTIONS_INIT: nk_gn_options =
    nk_gn_options { struct_size: std::mem::size_of::<nk_gn_options>() as u64, epsilon: 1e-5, groups: 32 };

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct nk_in_options {
    pub struct_size: u64,
    pub epsilon: f32,
    pub momentum: f32,
    pub momentum_convention: i32,
    pub moving_variance: i32,
}

/// The C macro NK_IN_OPTIONS_INIT.
pub const NK_IN_OPTIONS_INIT: nk_in_options = nk_in_options {
    struct_size: std::mem::size_of::<nk_in_options>() as u64,
    epsilon: 1e-5,
    momentum: 0.1,
    momentum_convention: NK_MOMENTUM_TORCH,
    moving_variance: NK_VARIANCE_UNBIASED,
};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct nk_ln_options {
    pub struct_size: u64,
    pub epsilon: f32,
}

/// The C macro NK_LN_OPTIONS_INIT.
pub const NK_LN_OPTIONS_INIT: nk_ln_options =
    nk_ln_options { struct_size: std::mem::size_of::<nk_ln_options>() as u64, epsilon: 1e-5 };

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct nk_sn_options {
    pub struct_size: u64,
    pub epsilon: f32,
    pub momentum: f32,
    pub use_bn: i32,
}

/// The C macro NK_SN_OPTIONS_INIT.
pub const NK_SN_OPTIONS_INIT: nk_sn_options = nk_sn_options {
    struct_size: std::mem::size_of::<nk_sn_options>() as u64,
    epsilon: 1e-5,
    momentum: 0.997,
    use_bn: 1,
};

extern "C" {
    pub fn nk_status_string(status: nk_status) -> *const c_char;
    pub fn nk_last_error() -> *const c_char;

    pub fn nk_version() -> i32;
    pub fn nk_version_major() -> i32;
    pub fn nk_version_minor() -> i32;
    pub fn nk_version_patch() -> i32;
    pub fn nk_version_string() -> *const c_char;

    pub fn nk_set_max_isa(name: *const c_char) -> nk_status;
    pub fn nk_active_isa() -> *const c_char;
    pub fn nk_isa_available(name: *const c_char) -> i32;
    pub fn nk_set_num_threads(n: i32) -> nk_status;
    pub fn nk_get_num_threads() -> i32;
    pub fn nk_set_stream_threshold(bytes: i64) -> nk_status;
    pub fn nk_get_stream_threshold() -> i64;

    pub fn nk_tensor_desc_init(desc: *mut nk_tensor_desc, ndim: i32, dims: *const i64, axis: i32)
        -> nk_status;

    pub fn nk_bn_options_init(opt: *mut nk_bn_options);
    pub fn nk_bn_forward_training(
        desc: *const nk_tensor_desc,
        opt: *const nk_bn_options,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        saved_mean: *mut f32,
        saved_invstd: *mut f32,
        moving_mean: *mut f32,
        moving_var: *mut f32,
    ) -> nk_status;
    pub fn nk_bn_forward_inference(
        desc: *const nk_tensor_desc,
        opt: *const nk_bn_options,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        moving_mean: *const f32,
        moving_var: *const f32,
    ) -> nk_status;
    pub fn nk_bn_backward(
        desc: *const nk_tensor_desc,
        opt: *const nk_bn_options,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        gamma: *const f32,
        saved_mean: *const f32,
        saved_invstd: *const f32,
        dx: *mut std::ffi::c_void,
        dgamma: *mut f32,
        dbeta: *mut f32,
    ) -> nk_status;

    pub fn nk_bn_state_init(state: *mut nk_bn_state);
    pub fn nk_bn_forward_training_ex(
        desc: *const nk_tensor_desc,
        opt: *const nk_bn_options,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        state: *mut nk_bn_state,
    ) -> nk_status;
    pub fn nk_bn_backward_ex(
        desc: *const nk_tensor_desc,
        opt: *const nk_bn_options,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        gamma: *const f32,
        state: *const nk_bn_state,
        dx: *mut std::ffi::c_void,
        dgamma: *mut f32,
        dbeta: *mut f32,
    ) -> nk_status;

    pub fn nk_bn_partial_stats(
        desc: *const nk_tensor_desc,
        x: *const std::ffi::c_void,
        count: *mut i64,
        mean: *mut f64,
        m2: *mut f64,
    ) -> nk_status;
    pub fn nk_bn_merge_stats(
        channels: i64,
        num_parts: i64,
        counts: *const i64,
        means: *const f64,
        m2s: *const f64,
        count: *mut i64,
        mean: *mut f64,
        m2: *mut f64,
    ) -> nk_status;
    pub fn nk_bn_finalize_stats(
        channels: i64,
        opt: *const nk_bn_options,
        count: i64,
        mean: *const f64,
        m2: *const f64,
        mean_out: *mut f32,
        invstd_out: *mut f32,
        moving_mean: *mut f32,
        moving_var: *mut f32,
    ) -> nk_status;
    pub fn nk_bn_apply(
        desc: *const nk_tensor_desc,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        mean: *const f32,
        invstd: *const f32,
    ) -> nk_status;
    pub fn nk_bn_apply_mean64(
        desc: *const nk_tensor_desc,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        mean: *const f64,
        invstd: *const f32,
    ) -> nk_status;
    pub fn nk_bn_backward_reduce(
        desc: *const nk_tensor_desc,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        mean: *const f32,
        invstd: *const f32,
        sum_dy: *mut f64,
        sum_dy_xhat: *mut f64,
    ) -> nk_status;
    pub fn nk_bn_backward_reduce_mean64(
        desc: *const nk_tensor_desc,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        mean: *const f64,
        invstd: *const f32,
        sum_dy: *mut f64,
        sum_dy_xhat: *mut f64,
    ) -> nk_status;
    pub fn nk_bn_backward_apply(
        desc: *const nk_tensor_desc,
        count: i64,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        gamma: *const f32,
        mean: *const f32,
        invstd: *const f32,
        sum_dy: *const f64,
        sum_dy_xhat: *const f64,
        dx: *mut std::ffi::c_void,
    ) -> nk_status;
    pub fn nk_bn_backward_apply_mean64(
        desc: *const nk_tensor_desc,
        count: i64,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        gamma: *const f32,
        mean: *const f64,
        invstd: *const f32,
        sum_dy: *const f64,
        sum_dy_xhat: *const f64,
        dx: *mut std::ffi::c_void,
    ) -> nk_status;

    // ---- activations
    pub fn nk_relu_forward(n: i64, x: *const f32, y: *mut f32) -> nk_status;
    pub fn nk_relu_backward(n: i64, x: *const f32, dy: *const f32, dx: *mut f32) -> nk_status;
    pub fn nk_leaky_relu_forward(n: i64, slope: f32, x: *const f32, y: *mut f32) -> nk_status;
    pub fn nk_leaky_relu_backward(n: i64, slope: f32, x: *const f32, dy: *const f32, dx: *mut f32) -> nk_status;
    pub fn nk_elu_forward(n: i64, alpha: f32, x: *const f32, y: *mut f32) -> nk_status;
    pub fn nk_elu_backward(n: i64, alpha: f32, x: *const f32, dy: *const f32, dx: *mut f32) -> nk_status;
    pub fn nk_selu_forward(n: i64, x: *const f32, y: *mut f32) -> nk_status;
    pub fn nk_selu_backward(n: i64, x: *const f32, dy: *const f32, dx: *mut f32) -> nk_status;
    pub fn nk_selu_alpha() -> f64;
    pub fn nk_selu_lambda() -> f64;
    pub fn nk_prelu_forward(
        desc: *const nk_tensor_desc,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        slope: *const f32,
        num_slopes: i64,
    ) -> nk_status;
    pub fn nk_prelu_backward(
        desc: *const nk_tensor_desc,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        slope: *const f32,
        num_slopes: i64,
        dx: *mut std::ffi::c_void,
        dslope: *mut f32,
    ) -> nk_status;
    pub fn nk_crelu_forward(desc: *const nk_tensor_desc, x: *const std::ffi::c_void, y: *mut std::ffi::c_void) -> nk_status;
    pub fn nk_crelu_backward(
        desc: *const nk_tensor_desc,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        dx: *mut std::ffi::c_void,
    ) -> nk_status;

    // ---- random
    pub fn nk_alpha_dropout_forward(n: i64, rate: f32, seed: u64, offset: u64, x: *const f32, y: *mut f32) -> nk_status;
    pub fn nk_alpha_dropout_backward(n: i64, rate: f32, seed: u64, offset: u64, dy: *const f32, dx: *mut f32) -> nk_status;
    pub fn nk_lecun_normal_init(n: i64, fan_in: i64, truncated: i32, seed: u64, offset: u64, w: *mut f32) -> nk_status;

    // ---- Group, Instance, Layer, RMS Norm
    pub fn nk_gn_options_init(opt: *mut nk_gn_options);
    pub fn nk_groupnorm_forward(
        desc: *const nk_tensor_desc,
        opt: *const nk_gn_options,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        saved_mean: *mut f32,
        saved_invstd: *mut f32,
    ) -> nk_status;
    pub fn nk_groupnorm_backward(
        desc: *const nk_tensor_desc,
        opt: *const nk_gn_options,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        gamma: *const f32,
        saved_mean: *const f32,
        saved_invstd: *const f32,
        dx: *mut std::ffi::c_void,
        dgamma: *mut f32,
        dbeta: *mut f32,
    ) -> nk_status;
    pub fn nk_in_options_init(opt: *mut nk_in_options);
    pub fn nk_instancenorm_forward_training(
        desc: *const nk_tensor_desc,
        opt: *const nk_in_options,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        saved_mean: *mut f32,
        saved_invstd: *mut f32,
        moving_mean: *mut f32,
        moving_var: *mut f32,
    ) -> nk_status;
    pub fn nk_instancenorm_forward_inference(
        desc: *const nk_tensor_desc,
        opt: *const nk_in_options,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        moving_mean: *const f32,
        moving_var: *const f32,
    ) -> nk_status;
    pub fn nk_instancenorm_backward(
        desc: *const nk_tensor_desc,
        opt: *const nk_in_options,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        gamma: *const f32,
        saved_mean: *const f32,
        saved_invstd: *const f32,
        dx: *mut std::ffi::c_void,
        dgamma: *mut f32,
        dbeta: *mut f32,
    ) -> nk_status;
    pub fn nk_ln_options_init(opt: *mut nk_ln_options);
    pub fn nk_layernorm_forward(
        desc: *const nk_tensor_desc,
        opt: *const nk_ln_options,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        saved_mean: *mut f32,
        saved_invstd: *mut f32,
    ) -> nk_status;
    pub fn nk_layernorm_backward(
        desc: *const nk_tensor_desc,
        opt: *const nk_ln_options,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        gamma: *const f32,
        saved_mean: *const f32,
        saved_invstd: *const f32,
        dx: *mut std::ffi::c_void,
        dgamma: *mut f32,
        dbeta: *mut f32,
    ) -> nk_status;
    pub fn nk_rmsnorm_forward(
        desc: *const nk_tensor_desc,
        opt: *const nk_ln_options,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        saved_rstd: *mut f32,
    ) -> nk_status;
    pub fn nk_rmsnorm_backward(
        desc: *const nk_tensor_desc,
        opt: *const nk_ln_options,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        gamma: *const f32,
        saved_rstd: *const f32,
        dx: *mut std::ffi::c_void,
        dgamma: *mut f32,
    ) -> nk_status;

    // ---- Switchable Norm
    pub fn nk_sn_options_init(opt: *mut nk_sn_options);
    pub fn nk_switchnorm_forward_training(
        desc: *const nk_tensor_desc,
        opt: *const nk_sn_options,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        mean_weight: *const f32,
        var_weight: *const f32,
        moving_mean: *mut f32,
        moving_var: *mut f32,
    ) -> nk_status;
    pub fn nk_switchnorm_forward_inference(
        desc: *const nk_tensor_desc,
        opt: *const nk_sn_options,
        x: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        mean_weight: *const f32,
        var_weight: *const f32,
        moving_mean: *const f32,
        moving_var: *const f32,
    ) -> nk_status;
    pub fn nk_switchnorm_backward(
        desc: *const nk_tensor_desc,
        opt: *const nk_sn_options,
        x: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        gamma: *const f32,
        mean_weight: *const f32,
        var_weight: *const f32,
        dx: *mut std::ffi::c_void,
        dgamma: *mut f32,
        dbeta: *mut f32,
        dmean_weight: *mut f32,
        dvar_weight: *mut f32,
    ) -> nk_status;

    // ---- normalization fused with a residual add and an activation
    pub fn nk_bn_act_forward_training(
        desc: *const nk_tensor_desc,
        opt: *const nk_bn_options,
        act: i32,
        act_param: f32,
        x: *const std::ffi::c_void,
        residual: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        state: *mut nk_bn_state,
    ) -> nk_status;
    pub fn nk_bn_act_forward_inference(
        desc: *const nk_tensor_desc,
        opt: *const nk_bn_options,
        act: i32,
        act_param: f32,
        x: *const std::ffi::c_void,
        residual: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        moving_mean: *const f32,
        moving_var: *const f32,
    ) -> nk_status;
    pub fn nk_bn_act_backward(
        desc: *const nk_tensor_desc,
        opt: *const nk_bn_options,
        act: i32,
        act_param: f32,
        x: *const std::ffi::c_void,
        residual: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        state: *const nk_bn_state,
        dx: *mut std::ffi::c_void,
        dresidual: *mut std::ffi::c_void,
        dgamma: *mut f32,
        dbeta: *mut f32,
    ) -> nk_status;
    pub fn nk_groupnorm_act_forward(
        desc: *const nk_tensor_desc,
        opt: *const nk_gn_options,
        act: i32,
        act_param: f32,
        x: *const std::ffi::c_void,
        residual: *const std::ffi::c_void,
        y: *mut std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        saved_mean: *mut f32,
        saved_invstd: *mut f32,
    ) -> nk_status;
    pub fn nk_groupnorm_act_backward(
        desc: *const nk_tensor_desc,
        opt: *const nk_gn_options,
        act: i32,
        act_param: f32,
        x: *const std::ffi::c_void,
        residual: *const std::ffi::c_void,
        dy: *const std::ffi::c_void,
        gamma: *const f32,
        beta: *const f32,
        saved_mean: *const f32,
        saved_invstd: *const f32,
        dx: *mut std::ffi::c_void,
        dresidual: *mut std::ffi::c_void,
        dgamma: *mut f32,
        dbeta: *mut f32,
    ) -> nk_status;
}
