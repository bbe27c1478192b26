"""
    NormKit

Julia bindings of libnormkit (SIMD CPU kernels for normalization layers) over
its C API, `include/normkit.h`, through `ccall`.

# Memory order
Julia arrays are column-major, normkit's tensors row-major: a Julia array of
size `(d1, d2, ..., dn)` is, in memory, the row-major tensor of dims
`(dn, ..., d2, d1)`. Julia dimension `k` (1-based) is C axis `n - k`
(0-based). So a `(W, H, C, N)` Julia array is an NCHW tensor, and its
channels, Julia dimension 3 (= `ndims - 1`, Flux's convention), are C axis 1.
A `(C, W, H, N)` array is NHWC (channel dimension 1, C axis 3). The feature
dimensions are given in Julia's numbering with the `dims` keyword (default
`ndims(x) - 1`, or 1 for a vector); parameter arrays hold
`prod(size(x, d) for d in dims)` floats (column-major over the feature dims
when there are several).

# Library
The path comes from `ENV["NORMKIT_LIB"]` when the module is loaded (at run
time, not precompile time), else `"libnormkit"` on the system search path.
"""
module NormKit

using Libdl

export NormKitError, BnOptions, bn_options, TensorDesc, BnState, BnStateArrays,
       bn_training!, bn_training, bn_inference!, bn_inference, bn_backward!, bn_backward,
       bn_training_ex!, bn_backward_ex!,
       bn_partial_stats, bn_merge_stats, bn_finalize_stats, bn_apply!, bn_backward_reduce,
       bn_backward_apply!, BatchNorm, forward!, backward,
       version, version_string, set_max_isa, active_isa, isa_available, set_num_threads,
       num_threads, set_stream_threshold, stream_threshold

const BINDING_MAJOR = 0
const MAX_DIMS = 8

const NK_OK = Int32(0)
const STATUS_NAMES = Dict{Int32,String}(
    0 => "NK_OK", 1 => "NK_ERR_NULL_POINTER", 2 => "NK_ERR_BAD_SHAPE", 3 => "NK_ERR_BAD_AXIS",
    4 => "NK_ERR_BAD_ARGUMENT", 5 => "NK_ERR_OVERFLOW", 6 => "NK_ERR_BAD_STRUCT_SIZE",
    7 => "NK_ERR_UNSUPPORTED", 8 => "NK_ERR_OUT_OF_MEMORY", 9 => "NK_ERR_BAD_ISA",
    10 => "NK_ERR_INTERNAL")
const MOMENTUM_TF, MOMENTUM_TORCH = Int32(0), Int32(1)
const VARIANCE_BIASED, VARIANCE_UNBIASED = Int32(0), Int32(1)
const GHOST_STRIDED, GHOST_CONTIGUOUS = Int32(0), Int32(1)

# ---- C structs (field order and types as in normkit.h) ------------------------

struct TensorDesc
    dtype::Int32
    ndim::Int32
    dims::NTuple{8,Int64}
    num_axes::Int32
    axes::NTuple{8,Int32}
end

struct BnOptions
    struct_size::UInt64
    epsilon::Cfloat
    momentum::Cfloat
    momentum_convention::Int32
    moving_variance::Int32
    virtual_batch_size::Int32
    virtual_grouping::Int32
    renorm::Int32
    renorm_momentum::Cfloat
    rmax::Cfloat
    rmin::Cfloat
    dmax::Cfloat
end

struct BnState
    struct_size::UInt64
    moving_mean::Ptr{Cfloat}
    moving_var::Ptr{Cfloat}
    moving_stddev::Ptr{Cfloat}
    renorm_mean::Ptr{Cfloat}
    renorm_stddev::Ptr{Cfloat}
    adjustment_scale::Ptr{Cfloat}
    adjustment_bias::Ptr{Cfloat}
    saved_mean::Ptr{Cfloat}
    saved_invstd::Ptr{Cfloat}
    saved_r::Ptr{Cfloat}
    saved_d::Ptr{Cfloat}
end

# ---- the library: opened in __init__, symbols looked up once --------------------

const FUNCTION_NAMES = [
    :nk_status_string, :nk_last_error, :nk_version, :nk_version_major, :nk_version_minor,
    :nk_version_patch, :nk_version_string, :nk_set_max_isa, :nk_active_isa, :nk_isa_available,
    :nk_set_num_threads, :nk_get_num_threads, :nk_set_stream_threshold, :nk_get_stream_threshold,
    :nk_tensor_desc_init, :nk_bn_options_init, :nk_bn_forward_training, :nk_bn_forward_inference,
    :nk_bn_backward, :nk_bn_state_init, :nk_bn_forward_training_ex, :nk_bn_backward_ex,
    :nk_bn_partial_stats, :nk_bn_merge_stats, :nk_bn_finalize_stats, :nk_bn_apply,
    :nk_bn_backward_reduce, :nk_bn_backward_apply, :nk_bn_apply_mean64,
    :nk_bn_backward_reduce_mean64, :nk_bn_backward_apply_mean64,
    :nk_relu_forward, :nk_relu_backward, :nk_leaky_relu_forward, :nk_leaky_relu_backward,
    :nk_elu_forward, :nk_elu_backward, :nk_selu_forward, :nk_selu_backward, :nk_selu_alpha,
    :nk_selu_lambda, :nk_prelu_forward, :nk_prelu_backward, :nk_crelu_forward, :nk_crelu_backward,
    :nk_alpha_dropout_forward, :nk_alpha_dropout_backward, :nk_lecun_normal_init,
    :nk_gn_options_init, :nk_groupnorm_forward, :nk_groupnorm_backward, :nk_in_options_init,
    :nk_instancenorm_forward_training, :nk_instancenorm_forward_inference, :nk_instancenorm_backward,
    :nk_ln_options_init, :nk_layernorm_forward, :nk_layernorm_backward, :nk_rmsnorm_forward,
    :nk_rmsnorm_backward, :nk_sn_options_init, :nk_switchnorm_forward_training,
    :nk_switchnorm_forward_inference, :nk_switchnorm_backward,
    :nk_bn_act_forward_training, :nk_bn_act_forward_inference, :nk_bn_act_backward,
    :nk_groupnorm_act_forward, :nk_groupnorm_act_backward]
const SYMS = Dict{Symbol,Ptr{Cvoid}}()
const LIB = Ref{Ptr{Cvoid}}(C_NULL)
const LIBPATH = Ref{String}("")

function __init__()
    LIBPATH[] = get(ENV, "NORMKIT_LIB", "libnormkit")
    LIB[] = Libdl.dlopen(LIBPATH[])
    for f in FUNCTION_NAMES
        SYMS[f] = something(Libdl.dlsym_e(LIB[], f), C_NULL)
    end
    major = ccall(sym(:nk_version_major), Int32, ())
    major == BINDING_MAJOR ||
        error("libnormkit at $(LIBPATH[]) has major version $major; NormKit.jl needs $BINDING_MAJOR")
end

"""The address of a C function; an error if the loaded library lacks it."""
function sym(name::Symbol)
    p = get(SYMS, name, C_NULL)
    p == C_NULL && error("$name is not exported by the loaded libnormkit ($(LIBPATH[]))")
    return p
end

has_function(name::Symbol) = get(SYMS, name, C_NULL) != C_NULL

# ---- errors ------------------------------------------------------------------------

"""A failed normkit call: `status` (the C code), `name`, `message` (the detail)."""
struct NormKitError <: Exception
    status::Int32
    message::String
end
Base.showerror(io::IO, e::NormKitError) =
    print(io, "NormKitError: ", get(STATUS_NAMES, e.status, "status $(e.status)"), " (",
          unsafe_string(ccall(sym(:nk_status_string), Cstring, (Int32,), e.status)), "): ", e.message)

function check(status::Int32)
    status == NK_OK && return nothing
    msg = unsafe_string(ccall(sym(:nk_last_error), Cstring, ()))
    throw(NormKitError(status, msg))
end

# ---- versions and settings ------------------------------------------------------------

version() = (ccall(sym(:nk_version_major), Int32, ()), ccall(sym(:nk_version_minor), Int32, ()),
             ccall(sym(:nk_version_patch), Int32, ()))
version_number() = ccall(sym(:nk_version), Int32, ())
version_string() = unsafe_string(ccall(sym(:nk_version_string), Cstring, ()))
"""Caps the ISA ("avx512", "avx2", "sse2", "neon", "scalar"); `nothing` removes the cap."""
set_max_isa(name::Union{Nothing,AbstractString}) =
    check(ccall(sym(:nk_set_max_isa), Int32, (Ptr{UInt8},), name === nothing ? C_NULL : String(name)))
active_isa() = unsafe_string(ccall(sym(:nk_active_isa), Cstring, ()))
isa_available(name::AbstractString) = ccall(sym(:nk_isa_available), Int32, (Cstring,), name) != 0
set_num_threads(n::Integer) = check(ccall(sym(:nk_set_num_threads), Int32, (Int32,), n))
num_threads() = ccall(sym(:nk_get_num_threads), Int32, ())
set_stream_threshold(bytes::Integer) = check(ccall(sym(:nk_set_stream_threshold), Int32, (Int64,), bytes))
stream_threshold() = ccall(sym(:nk_get_stream_threshold), Int64, ())

# ---- options -----------------------------------------------------------------------------

const ENUMS = Dict(
    :momentum_convention => Dict(:tf => MOMENTUM_TF, :torch => MOMENTUM_TORCH),
    :moving_variance => Dict(:biased => VARIANCE_BIASED, :unbiased => VARIANCE_UNBIASED),
    :virtual_grouping => Dict(:strided => GHOST_STRIDED, :contiguous => GHOST_CONTIGUOUS))

"""
    bn_options(; epsilon, momentum, momentum_convention=:tf|:torch,
               moving_variance=:biased|:unbiased, virtual_batch_size, virtual_grouping,
               renorm::Bool, renorm_momentum, rmax, rmin, dmax)

TensorFlow's defaults (from `nk_bn_options_init`) with the given fields changed.
"""
function bn_options(; kw...)
    r = Ref{BnOptions}()
    ccall(sym(:nk_bn_options_init), Cvoid, (Ref{BnOptions},), r)
    o = r[]
    for k in keys(kw)
        k in fieldnames(BnOptions) && k !== :struct_size || throw(ArgumentError("unknown option $k"))
    end
    vals = map(fieldnames(BnOptions)) do f
        v = get(kw, f, getfield(o, f))
        v isa Symbol && (v = ENUMS[f][v])
        v isa Bool && (v = Int32(v))
        convert(fieldtype(BnOptions, f), v)
    end
    return BnOptions(vals...)
end

# A copy of options with this package's struct_size: the library reads
# struct_size bytes of the struct, so a caller's value must never reach it.
own(o::T) where {T} = T(UInt64(sizeof(T)), ntuple(i -> getfield(o, i + 1), fieldcount(T) - 1)...)

groups(o::BnOptions, n::Integer) =
    (o.virtual_batch_size > 0 && n % o.virtual_batch_size == 0) ? n ÷ o.virtual_batch_size : 1

# ---- tensors: Julia dims -> C descriptor ---------------------------------------------------

default_dims(x::AbstractArray) = ndims(x) == 1 ? 1 : ndims(x) - 1

"""The C descriptor of Julia array `x` with feature dimensions `dims` (Julia
numbering) and the number of features."""
function tensor_desc(x::DenseArray{Float32}, dims)
    n = ndims(x)
    1 <= n <= MAX_DIMS || throw(DimensionMismatch("arrays of 1 to $MAX_DIMS dimensions, not $n"))
    fd = sort!(collect(Int, dims isa Integer ? (dims,) : dims))
    (isempty(fd) || !allunique(fd) || any(d -> !(1 <= d <= n), fd)) &&
        throw(ArgumentError("feature dims $dims out of 1:$n or repeated"))
    cdims = ntuple(i -> i <= n ? Int64(size(x, n + 1 - i)) : Int64(0), MAX_DIMS)  # reversed
    caxes_sorted = sort!([n - d for d in fd])                                          # C axis of Julia dim d
    caxes = ntuple(i -> i <= length(fd) ? Int32(caxes_sorted[i]) : Int32(0), MAX_DIMS)
    channels = prod(size(x, d) for d in fd)
    return TensorDesc(Int32(0), Int32(n), cdims, Int32(length(fd)), caxes), channels
end

"""
    c_tensor_desc(cdims, caxis) -> TensorDesc

A float32 descriptor from C-ordered (row-major) dims and one C feature axis
(0-based, negative from the end), through nk_tensor_desc_init: for callers
who think in C's order. Arrays passed with it must match `reverse(cdims)`.
"""
function c_tensor_desc(cdims::AbstractVector{<:Integer}, caxis::Integer)
    d = Vector{Int64}(cdims)
    r = Ref{TensorDesc}()
    GC.@preserve d begin
        check(ccall(sym(:nk_tensor_desc_init), Int32, (Ref{TensorDesc}, Int32, Ptr{Int64}, Int32),
                    r, length(d), pointer(d), caxis))
    end
    return r[]
end

checklen(a, n, name) = (a === nothing || length(a) == n) ||
    throw(DimensionMismatch("$name has $(length(a)) elements, needs $n"))
ptr(a) = a === nothing ? Ptr{Cfloat}(C_NULL) : pointer(a)
ptrd(a) = a === nothing ? Ptr{Cdouble}(C_NULL) : pointer(a)
samesize(a, x, name) = size(a) == size(x) ||
    throw(DimensionMismatch("$name has size $(size(a)), x has $(size(x))"))
const F32 = Union{Nothing,DenseArray{Float32}}

# ---- Batch Norm --------------------------------------------------------------------------------

"""
    bn_training!(y, x; gamma, beta, moving_mean, moving_var, dims, options) -> (saved_mean, saved_invstd)

Training forward into `y` (may be `x`); moving statistics updated in place.
"""
function bn_training!(y::DenseArray{Float32}, x::DenseArray{Float32}; gamma::F32=nothing,
                      beta::F32=nothing, moving_mean::F32=nothing, moving_var::F32=nothing,
                      dims=default_dims(x), options::BnOptions=bn_options())
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    (moving_mean === nothing) == (moving_var === nothing) ||
        throw(ArgumentError("moving_mean and moving_var: both or neither"))
    foreach(((a, n),) -> checklen(a, C, n),
            ((gamma, "gamma"), (beta, "beta"), (moving_mean, "moving_mean"), (moving_var, "moving_var")))
    G = groups(options, size(x, ndims(x)))
    sm = Vector{Float32}(undef, G * C)
    si = Vector{Float32}(undef, G * C)
    GC.@preserve x y gamma beta moving_mean moving_var sm si begin
        check(ccall(sym(:nk_bn_forward_training), Int32,
                    (Ref{TensorDesc}, Ref{BnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(y), ptr(gamma), ptr(beta), pointer(sm),
                    pointer(si), ptr(moving_mean), ptr(moving_var)))
    end
    return sm, si
end

"""`bn_training(x; kw...) -> (y, saved_mean, saved_invstd)`"""
function bn_training(x::DenseArray{Float32}; kw...)
    y = similar(x)
    sm, si = bn_training!(y, x; kw...)
    return y, sm, si
end

function bn_inference!(y::DenseArray{Float32}, x::DenseArray{Float32}, moving_mean::DenseArray{Float32},
                       moving_var::DenseArray{Float32}; gamma::F32=nothing, beta::F32=nothing,
                       dims=default_dims(x), options::BnOptions=bn_options())
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    foreach(((a, n),) -> checklen(a, C, n),
            ((gamma, "gamma"), (beta, "beta"), (moving_mean, "moving_mean"), (moving_var, "moving_var")))
    GC.@preserve x y gamma beta moving_mean moving_var begin
        check(ccall(sym(:nk_bn_forward_inference), Int32,
                    (Ref{TensorDesc}, Ref{BnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(y), ptr(gamma), ptr(beta), pointer(moving_mean),
                    pointer(moving_var)))
    end
    return y
end
bn_inference(x, moving_mean, moving_var; kw...) = bn_inference!(similar(x), x, moving_mean, moving_var; kw...)

"""
    bn_backward!(dx, x, dy, saved_mean, saved_invstd; gamma, dgamma, dbeta, dims, options)

dx (may be dy); dgamma and dbeta filled when given (omit both: not trainable).
"""
function bn_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                      saved_mean::DenseArray{Float32}, saved_invstd::DenseArray{Float32};
                      gamma::F32=nothing, dgamma::F32=nothing, dbeta::F32=nothing,
                      dims=default_dims(x), options::BnOptions=bn_options())
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy")
    samesize(dx, x, "dx")
    G = groups(options, size(x, ndims(x)))
    foreach(((a, n, l),) -> checklen(a, l, n),
            ((gamma, "gamma", C), (dgamma, "dgamma", C), (dbeta, "dbeta", C),
             (saved_mean, "saved_mean", G * C), (saved_invstd, "saved_invstd", G * C)))
    GC.@preserve x dy dx gamma dgamma dbeta saved_mean saved_invstd begin
        check(ccall(sym(:nk_bn_backward), Int32,
                    (Ref{TensorDesc}, Ref{BnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(dy), ptr(gamma), pointer(saved_mean),
                    pointer(saved_invstd), pointer(dx), ptr(dgamma), ptr(dbeta)))
    end
    return dx
end

"""`bn_backward(x, dy, saved_mean, saved_invstd; gamma, dims, options) -> (dx, dgamma, dbeta)`"""
function bn_backward(x, dy, saved_mean, saved_invstd; dims=default_dims(x), kw...)
    _, C = tensor_desc(x, dims)
    dg, db = Vector{Float32}(undef, C), Vector{Float32}(undef, C)
    dx = bn_backward!(similar(x), x, dy, saved_mean, saved_invstd; dgamma=dg, dbeta=db, dims=dims, kw...)
    return dx, dg, db
end

"""The arrays of `nk_bn_state` (nothing where unused); see normkit.h."""
Base.@kwdef mutable struct BnStateArrays
    moving_mean::F32 = nothing
    moving_var::F32 = nothing
    moving_stddev::F32 = nothing
    renorm_mean::F32 = nothing
    renorm_stddev::F32 = nothing
    adjustment_scale::F32 = nothing
    adjustment_bias::F32 = nothing
    saved_mean::F32 = nothing
    saved_invstd::F32 = nothing
    saved_r::F32 = nothing
    saved_d::F32 = nothing
end

"""The C struct over `s`'s arrays: only valid while those arrays are under `GC.@preserve`."""
function raw_state(s::BnStateArrays, C, G)
    for f in fieldnames(BnStateArrays)
        checklen(getfield(s, f), f in (:saved_mean, :saved_invstd) ? G * C : C, String(f))
    end
    r = Ref{BnState}()
    ccall(sym(:nk_bn_state_init), Cvoid, (Ref{BnState},), r)
    return BnState(r[].struct_size, (ptr(getfield(s, f)) for f in fieldnames(BnStateArrays))...)
end

"""Allocates the saved arrays a training forward fills where they are `nothing`."""
function alloc_saved!(state::BnStateArrays, C, G, options::BnOptions)
    state.saved_mean === nothing && (state.saved_mean = Vector{Float32}(undef, G * C))
    state.saved_invstd === nothing && (state.saved_invstd = Vector{Float32}(undef, G * C))
    if options.renorm != 0
        state.saved_r === nothing && (state.saved_r = Vector{Float32}(undef, C))
        state.saved_d === nothing && (state.saved_d = Vector{Float32}(undef, C))
    end
    return state
end

"""Training forward with every option (renorm, virtual batches, adjustment);
`state` updated. Needs a libnormkit exporting nk_bn_forward_training_ex."""
function bn_training_ex!(y::DenseArray{Float32}, x::DenseArray{Float32}, state::BnStateArrays;
                         gamma::F32=nothing, beta::F32=nothing, dims=default_dims(x),
                         options::BnOptions=bn_options())
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    checklen(gamma, C, "gamma"); checklen(beta, C, "beta")
    G = groups(options, size(x, ndims(x)))
    alloc_saved!(state, C, G, options)
    a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11 = (getfield(state, f) for f in fieldnames(BnStateArrays))
    s = state
    GC.@preserve x y gamma beta a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 begin  # @preserve takes names only
        raw = Ref(raw_state(s, C, G))
        check(ccall(sym(:nk_bn_forward_training_ex), Int32,
                    (Ref{TensorDesc}, Ref{BnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ref{BnState}),
                    desc, own(options), pointer(x), pointer(y), ptr(gamma), ptr(beta), raw))
    end
    return y
end

function bn_backward_ex!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                         state::BnStateArrays; gamma::F32=nothing, dgamma::F32=nothing,
                         dbeta::F32=nothing, dims=default_dims(x), options::BnOptions=bn_options())
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    checklen(gamma, C, "gamma"); checklen(dgamma, C, "dgamma"); checklen(dbeta, C, "dbeta")
    G = groups(options, size(x, ndims(x)))
    a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11 = (getfield(state, f) for f in fieldnames(BnStateArrays))
    s = state
    GC.@preserve x dy dx gamma dgamma dbeta a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 begin  # @preserve takes names only
        raw = Ref(raw_state(s, C, G))
        check(ccall(sym(:nk_bn_backward_ex), Int32,
                    (Ref{TensorDesc}, Ref{BnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ref{BnState},
                     Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(dy), ptr(gamma), raw, pointer(dx), ptr(dgamma),
                    ptr(dbeta)))
    end
    return dx
end

# ---- split statistics (Sync Batch Norm) ---------------------------------------------------

"""`bn_partial_stats(x; dims) -> (count, mean, m2)` of this part (Float64 vectors)."""
function bn_partial_stats(x::DenseArray{Float32}; dims=default_dims(x))
    desc, C = tensor_desc(x, dims)
    count = Ref{Int64}(0)
    mean, m2 = Vector{Float64}(undef, C), Vector{Float64}(undef, C)
    GC.@preserve x mean m2 begin
        check(ccall(sym(:nk_bn_partial_stats), Int32,
                    (Ref{TensorDesc}, Ptr{Cvoid}, Ref{Int64}, Ptr{Cdouble}, Ptr{Cdouble}),
                    desc, pointer(x), count, pointer(mean), pointer(m2)))
    end
    return count[], mean, m2
end

"""Merges P partials: `counts` (P), `means` and `m2s` of size (C, P) — column
j is part j (C's P rows of C). Returns (count, mean, m2)."""
function bn_merge_stats(counts::AbstractVector{<:Integer}, means::AbstractMatrix{Float64},
                        m2s::AbstractMatrix{Float64})
    C, P = size(means)
    size(m2s) == (C, P) && length(counts) == P ||
        throw(DimensionMismatch("means, m2s must be (C, P) and counts P long"))
    cs = Vector{Int64}(counts)
    mn, m2c = Matrix{Float64}(means), Matrix{Float64}(m2s)
    count = Ref{Int64}(0)
    mean, m2 = Vector{Float64}(undef, C), Vector{Float64}(undef, C)
    GC.@preserve cs mn m2c mean m2 begin
        check(ccall(sym(:nk_bn_merge_stats), Int32,
                    (Int64, Int64, Ptr{Int64}, Ptr{Cdouble}, Ptr{Cdouble}, Ref{Int64}, Ptr{Cdouble},
                     Ptr{Cdouble}),
                    C, P, pointer(cs), pointer(mn), pointer(m2c), count, pointer(mean), pointer(m2)))
    end
    return count[], mean, m2
end

"""`bn_finalize_stats(count, mean, m2; moving_mean, moving_var, options) -> (mean, invstd)` (Float32)."""
function bn_finalize_stats(count::Integer, mean::Vector{Float64}, m2::Vector{Float64};
                           moving_mean::F32=nothing, moving_var::F32=nothing,
                           options::BnOptions=bn_options())
    C = length(mean)
    checklen(m2, C, "m2"); checklen(moving_mean, C, "moving_mean"); checklen(moving_var, C, "moving_var")
    mo, io = Vector{Float32}(undef, C), Vector{Float32}(undef, C)
    GC.@preserve mean m2 mo io moving_mean moving_var begin
        check(ccall(sym(:nk_bn_finalize_stats), Int32,
                    (Int64, Ref{BnOptions}, Int64, Ptr{Cdouble}, Ptr{Cdouble}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cfloat}),
                    C, own(options), count, pointer(mean), pointer(m2), pointer(mo), pointer(io),
                    ptr(moving_mean), ptr(moving_var)))
    end
    return mo, io
end

function bn_apply!(y::DenseArray{Float32}, x::DenseArray{Float32}, mean::Vector{Float32},
                   invstd::Vector{Float32}; gamma::F32=nothing, beta::F32=nothing, dims=default_dims(x))
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    foreach(((a, n),) -> checklen(a, C, n), ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (invstd, "invstd")))
    GC.@preserve x y gamma beta mean invstd begin
        check(ccall(sym(:nk_bn_apply), Int32,
                    (Ref{TensorDesc}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}),
                    desc, pointer(x), pointer(y), ptr(gamma), ptr(beta), pointer(mean), pointer(invstd)))
    end
    return y
end

"""`(sum_dy, sum_dy_xhat)` of this part (Float64): sum them over all parts."""
function bn_backward_reduce(x::DenseArray{Float32}, dy::DenseArray{Float32}, mean::Vector{Float32},
                            invstd::Vector{Float32}; dims=default_dims(x))
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy")
    checklen(mean, C, "mean"); checklen(invstd, C, "invstd")
    s1, s2 = Vector{Float64}(undef, C), Vector{Float64}(undef, C)
    GC.@preserve x dy mean invstd s1 s2 begin
        check(ccall(sym(:nk_bn_backward_reduce), Int32,
                    (Ref{TensorDesc}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cdouble},
                     Ptr{Cdouble}),
                    desc, pointer(x), pointer(dy), pointer(mean), pointer(invstd), pointer(s1), pointer(s2)))
    end
    return s1, s2
end

function bn_backward_apply!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                            count::Integer, mean::Vector{Float32}, invstd::Vector{Float32},
                            sum_dy::Vector{Float64}, sum_dy_xhat::Vector{Float64};
                            gamma::F32=nothing, dims=default_dims(x))
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    foreach(((a, n),) -> checklen(a, C, n), ((gamma, "gamma"), (mean, "mean"), (invstd, "invstd"),
                                            (sum_dy, "sum_dy"), (sum_dy_xhat, "sum_dy_xhat")))
    GC.@preserve x dy dx gamma mean invstd sum_dy sum_dy_xhat begin
        check(ccall(sym(:nk_bn_backward_apply), Int32,
                    (Ref{TensorDesc}, Int64, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cdouble}, Ptr{Cdouble}, Ptr{Cvoid}),
                    desc, count, pointer(x), pointer(dy), ptr(gamma), pointer(mean), pointer(invstd),
                    pointer(sum_dy), pointer(sum_dy_xhat), pointer(dx)))
    end
    return dx
end

# The same three with the merged mean as the Float64 that bn_merge_stats gives (the
# *_mean64 forms): a Float32 mean is off by up to half its ulp, which moves xhat by that
# over the standard deviation when the mean is large against the spread.

function bn_apply!(y::DenseArray{Float32}, x::DenseArray{Float32}, mean::Vector{Float64},
                   invstd::Vector{Float32}; gamma::F32=nothing, beta::F32=nothing, dims=default_dims(x))
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    foreach(((a, n),) -> checklen(a, C, n), ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (invstd, "invstd")))
    GC.@preserve x y gamma beta mean invstd begin
        check(ccall(sym(:nk_bn_apply_mean64), Int32,
                    (Ref{TensorDesc}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cdouble},
                     Ptr{Cfloat}),
                    desc, pointer(x), pointer(y), ptr(gamma), ptr(beta), pointer(mean), pointer(invstd)))
    end
    return y
end

function bn_backward_reduce(x::DenseArray{Float32}, dy::DenseArray{Float32}, mean::Vector{Float64},
                            invstd::Vector{Float32}; dims=default_dims(x))
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy")
    checklen(mean, C, "mean"); checklen(invstd, C, "invstd")
    s1, s2 = Vector{Float64}(undef, C), Vector{Float64}(undef, C)
    GC.@preserve x dy mean invstd s1 s2 begin
        check(ccall(sym(:nk_bn_backward_reduce_mean64), Int32,
                    (Ref{TensorDesc}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cdouble}, Ptr{Cfloat}, Ptr{Cdouble},
                     Ptr{Cdouble}),
                    desc, pointer(x), pointer(dy), pointer(mean), pointer(invstd), pointer(s1), pointer(s2)))
    end
    return s1, s2
end

function bn_backward_apply!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                            count::Integer, mean::Vector{Float64}, invstd::Vector{Float32},
                            sum_dy::Vector{Float64}, sum_dy_xhat::Vector{Float64};
                            gamma::F32=nothing, dims=default_dims(x))
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    foreach(((a, n),) -> checklen(a, C, n), ((gamma, "gamma"), (mean, "mean"), (invstd, "invstd"),
                                            (sum_dy, "sum_dy"), (sum_dy_xhat, "sum_dy_xhat")))
    GC.@preserve x dy dx gamma mean invstd sum_dy sum_dy_xhat begin
        check(ccall(sym(:nk_bn_backward_apply_mean64), Int32,
                    (Ref{TensorDesc}, Int64, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cdouble}, Ptr{Cfloat},
                     Ptr{Cdouble}, Ptr{Cdouble}, Ptr{Cvoid}),
                    desc, count, pointer(x), pointer(dy), ptr(gamma), pointer(mean), pointer(invstd),
                    pointer(sum_dy), pointer(sum_dy_xhat), pointer(dx)))
    end
    return dx
end

# ---- Group, Instance, Layer, RMS and Switchable Norm ------------------------------------
#
# Memory order as for Batch Norm: C axis 0 (the batch) is Julia's last dim, so an array of
# size (W, H, C, N) is NCHW and the channel dim is `dims = ndims(x) - 1` (the default);
# (C, W, H, N) is NHWC with `dims = 1`. Layer Norm and RMSNorm normalize over Julia's
# leading dims (C's trailing axes): `dims = 1` (default) or `dims = 1:2`.

export GnOptions, InOptions, LnOptions, SnOptions, gn_options, in_options, ln_options, sn_options,
       groupnorm!, groupnorm, groupnorm_backward!, groupnorm_backward,
       instancenorm_training!, instancenorm_training, instancenorm_inference!, instancenorm_inference,
       instancenorm_backward!, instancenorm_backward,
       layernorm!, layernorm, layernorm_backward!, layernorm_backward,
       rmsnorm!, rmsnorm, rmsnorm_backward!, rmsnorm_backward,
       switchnorm_training!, switchnorm_inference!, switchnorm_backward!, switchnorm_backward,
       relu!, relu_backward!, leaky_relu!, leaky_relu_backward!, elu!, elu_backward!,
       selu!, selu_backward!, selu_alpha, selu_lambda, prelu!, prelu_backward!,
       crelu, crelu_backward!, alpha_dropout!, alpha_dropout_backward!, lecun_normal_init!,
       LECUN_NORMAL, LECUN_TRUNCATED

const LECUN_NORMAL, LECUN_TRUNCATED = Int32(0), Int32(1)

struct GnOptions
    struct_size::UInt64
    epsilon::Cfloat
    groups::Int32
end

struct InOptions
    struct_size::UInt64
    epsilon::Cfloat
    momentum::Cfloat
    momentum_convention::Int32
    moving_variance::Int32
end

struct LnOptions
    struct_size::UInt64
    epsilon::Cfloat
end

struct SnOptions
    struct_size::UInt64
    epsilon::Cfloat
    momentum::Cfloat
    use_bn::Int32
end

function with_fields(::Type{T}, o::T, kw) where {T}
    for k in keys(kw)
        k in fieldnames(T) && k !== :struct_size || throw(ArgumentError("unknown option $k"))
    end
    vals = map(fieldnames(T)) do f
        v = get(kw, f, getfield(o, f))
        v isa Symbol && (v = ENUMS[f][v])
        v isa Bool && (v = Int32(v))
        convert(fieldtype(T, f), v)
    end
    return T(vals...)
end

"""`gn_options(; epsilon=1f-5, groups=32)`"""
function gn_options(; kw...)
    r = Ref{GnOptions}()
    ccall(sym(:nk_gn_options_init), Cvoid, (Ref{GnOptions},), r)
    return with_fields(GnOptions, r[], kw)
end
"""`in_options(; epsilon=1f-5, momentum=0.1, momentum_convention=:torch, moving_variance=:unbiased)`"""
function in_options(; kw...)
    r = Ref{InOptions}()
    ccall(sym(:nk_in_options_init), Cvoid, (Ref{InOptions},), r)
    return with_fields(InOptions, r[], kw)
end
"""`ln_options(; epsilon=1f-5)` (Layer Norm and RMSNorm)"""
function ln_options(; kw...)
    r = Ref{LnOptions}()
    ccall(sym(:nk_ln_options_init), Cvoid, (Ref{LnOptions},), r)
    return with_fields(LnOptions, r[], kw)
end
"""`sn_options(; epsilon=1f-5, momentum=0.997, use_bn=true)`"""
function sn_options(; kw...)
    r = Ref{SnOptions}()
    ccall(sym(:nk_sn_options_init), Cvoid, (Ref{SnOptions},), r)
    return with_fields(SnOptions, r[], kw)
end

batchsize(x) = size(x, ndims(x))
rowcount(x, D) = length(x) ÷ D

"""
    groupnorm!(y, x; gamma, beta, dims, options=gn_options()) -> (saved_mean, saved_invstd)

Group Norm into `y` (may be `x`); saved arrays N*G (sample n, group g at n*G + g, 0-based).
"""
function groupnorm!(y::DenseArray{Float32}, x::DenseArray{Float32}; gamma::F32=nothing,
                    beta::F32=nothing, dims=default_dims(x), options::GnOptions=gn_options())
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    checklen(gamma, C, "gamma"); checklen(beta, C, "beta")
    NG = batchsize(x) * max(Int(options.groups), 0)
    sm, si = Vector{Float32}(undef, NG), Vector{Float32}(undef, NG)
    GC.@preserve x y gamma beta sm si begin
        check(ccall(sym(:nk_groupnorm_forward), Int32,
                    (Ref{TensorDesc}, Ref{GnOptions},
                     Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(y), ptr(gamma), ptr(beta), pointer(sm), pointer(si)))
    end
    return sm, si
end
groupnorm(x::DenseArray{Float32}; kw...) = (y = similar(x); (y, groupnorm!(y, x; kw...)...))

"""
    groupnorm_backward!(dx, x, dy, saved_mean, saved_invstd; gamma, dgamma, dbeta, dims, options)
"""
function groupnorm_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                             saved_mean::DenseArray{Float32}, saved_invstd::DenseArray{Float32};
                             gamma::F32=nothing, dgamma::F32=nothing, dbeta::F32=nothing,
                             dims=default_dims(x), options::GnOptions=gn_options())
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    NG = batchsize(x) * max(Int(options.groups), 0)
    foreach(((a, n, l),) -> checklen(a, l, n),
            ((gamma, "gamma", C), (dgamma, "dgamma", C), (dbeta, "dbeta", C),
             (saved_mean, "saved_mean", NG), (saved_invstd, "saved_invstd", NG)))
    GC.@preserve x dy dx gamma dgamma dbeta saved_mean saved_invstd begin
        check(ccall(sym(:nk_groupnorm_backward), Int32,
                    (Ref{TensorDesc}, Ref{GnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(dy), ptr(gamma), pointer(saved_mean),
                    pointer(saved_invstd), pointer(dx), ptr(dgamma), ptr(dbeta)))
    end
    return dx
end
"""`groupnorm_backward(x, dy, saved_mean, saved_invstd; gamma, dims, options) -> (dx, dgamma, dbeta)`"""
function groupnorm_backward(x, dy, saved_mean, saved_invstd; dims=default_dims(x), kw...)
    _, C = tensor_desc(x, dims)
    dg, db = Vector{Float32}(undef, C), Vector{Float32}(undef, C)
    dx = groupnorm_backward!(similar(x), x, dy, saved_mean, saved_invstd; dgamma=dg, dbeta=db, dims=dims, kw...)
    return dx, dg, db
end

"""
    instancenorm_training!(y, x; gamma, beta, moving_mean, moving_var, dims, options=in_options())
        -> (saved_mean, saved_invstd)

Saved arrays N*C (n*C + c, 0-based); moving statistics updated in place (PyTorch's rules).
"""
function instancenorm_training!(y::DenseArray{Float32}, x::DenseArray{Float32}; gamma::F32=nothing,
                                beta::F32=nothing, moving_mean::F32=nothing, moving_var::F32=nothing,
                                dims=default_dims(x), options::InOptions=in_options())
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    (moving_mean === nothing) == (moving_var === nothing) ||
        throw(ArgumentError("moving_mean and moving_var: both or neither"))
    foreach(((a, n),) -> checklen(a, C, n),
            ((gamma, "gamma"), (beta, "beta"), (moving_mean, "moving_mean"), (moving_var, "moving_var")))
    NC = batchsize(x) * C
    sm, si = Vector{Float32}(undef, NC), Vector{Float32}(undef, NC)
    GC.@preserve x y gamma beta moving_mean moving_var sm si begin
        check(ccall(sym(:nk_instancenorm_forward_training), Int32,
                    (Ref{TensorDesc}, Ref{InOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(y), ptr(gamma), ptr(beta), pointer(sm),
                    pointer(si), ptr(moving_mean), ptr(moving_var)))
    end
    return sm, si
end
instancenorm_training(x::DenseArray{Float32}; kw...) = (y = similar(x); (y, instancenorm_training!(y, x; kw...)...))

function instancenorm_inference!(y::DenseArray{Float32}, x::DenseArray{Float32},
                                 moving_mean::DenseArray{Float32}, moving_var::DenseArray{Float32};
                                 gamma::F32=nothing, beta::F32=nothing, dims=default_dims(x),
                                 options::InOptions=in_options())
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    foreach(((a, n),) -> checklen(a, C, n),
            ((gamma, "gamma"), (beta, "beta"), (moving_mean, "moving_mean"), (moving_var, "moving_var")))
    GC.@preserve x y gamma beta moving_mean moving_var begin
        check(ccall(sym(:nk_instancenorm_forward_inference), Int32,
                    (Ref{TensorDesc}, Ref{InOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(y), ptr(gamma), ptr(beta), pointer(moving_mean),
                    pointer(moving_var)))
    end
    return y
end
instancenorm_inference(x, moving_mean, moving_var; kw...) =
    instancenorm_inference!(similar(x), x, moving_mean, moving_var; kw...)

function instancenorm_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                                saved_mean::DenseArray{Float32}, saved_invstd::DenseArray{Float32};
                                gamma::F32=nothing, dgamma::F32=nothing, dbeta::F32=nothing,
                                dims=default_dims(x), options::InOptions=in_options())
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    NC = batchsize(x) * C
    foreach(((a, n, l),) -> checklen(a, l, n),
            ((gamma, "gamma", C), (dgamma, "dgamma", C), (dbeta, "dbeta", C),
             (saved_mean, "saved_mean", NC), (saved_invstd, "saved_invstd", NC)))
    GC.@preserve x dy dx gamma dgamma dbeta saved_mean saved_invstd begin
        check(ccall(sym(:nk_instancenorm_backward), Int32,
                    (Ref{TensorDesc}, Ref{InOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(dy), ptr(gamma), pointer(saved_mean),
                    pointer(saved_invstd), pointer(dx), ptr(dgamma), ptr(dbeta)))
    end
    return dx
end
function instancenorm_backward(x, dy, saved_mean, saved_invstd; dims=default_dims(x), kw...)
    _, C = tensor_desc(x, dims)
    dg, db = Vector{Float32}(undef, C), Vector{Float32}(undef, C)
    dx = instancenorm_backward!(similar(x), x, dy, saved_mean, saved_invstd; dgamma=dg, dbeta=db, dims=dims, kw...)
    return dx, dg, db
end

"""
    layernorm!(y, x; gamma, beta, dims=1, options=ln_options()) -> (saved_mean, saved_invstd)

Normalizes over Julia's leading `dims` (C's trailing axes), D = their product;
gamma, beta have D elements; saved arrays one per row (length(x) / D).
"""
function layernorm!(y::DenseArray{Float32}, x::DenseArray{Float32}; gamma::F32=nothing,
                    beta::F32=nothing, dims=1, options::LnOptions=ln_options())
    desc, D = tensor_desc(x, dims)
    samesize(y, x, "y")
    checklen(gamma, D, "gamma"); checklen(beta, D, "beta")
    R = rowcount(x, D)
    sm, si = Vector{Float32}(undef, R), Vector{Float32}(undef, R)
    GC.@preserve x y gamma beta sm si begin
        check(ccall(sym(:nk_layernorm_forward), Int32,
                    (Ref{TensorDesc}, Ref{LnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(y), ptr(gamma), ptr(beta), pointer(sm), pointer(si)))
    end
    return sm, si
end
layernorm(x::DenseArray{Float32}; kw...) = (y = similar(x); (y, layernorm!(y, x; kw...)...))

function layernorm_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                             saved_mean::DenseArray{Float32}, saved_invstd::DenseArray{Float32};
                             gamma::F32=nothing, dgamma::F32=nothing, dbeta::F32=nothing, dims=1,
                             options::LnOptions=ln_options())
    desc, D = tensor_desc(x, dims)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    R = rowcount(x, D)
    foreach(((a, n, l),) -> checklen(a, l, n),
            ((gamma, "gamma", D), (dgamma, "dgamma", D), (dbeta, "dbeta", D),
             (saved_mean, "saved_mean", R), (saved_invstd, "saved_invstd", R)))
    GC.@preserve x dy dx gamma dgamma dbeta saved_mean saved_invstd begin
        check(ccall(sym(:nk_layernorm_backward), Int32,
                    (Ref{TensorDesc}, Ref{LnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(dy), ptr(gamma), pointer(saved_mean),
                    pointer(saved_invstd), pointer(dx), ptr(dgamma), ptr(dbeta)))
    end
    return dx
end
function layernorm_backward(x, dy, saved_mean, saved_invstd; dims=1, kw...)
    _, D = tensor_desc(x, dims)
    dg, db = Vector{Float32}(undef, D), Vector{Float32}(undef, D)
    dx = layernorm_backward!(similar(x), x, dy, saved_mean, saved_invstd; dgamma=dg, dbeta=db, dims=dims, kw...)
    return dx, dg, db
end

"""`rmsnorm!(y, x; gamma, dims=1, options=ln_options()) -> saved_rstd` (one per row)."""
function rmsnorm!(y::DenseArray{Float32}, x::DenseArray{Float32}; gamma::F32=nothing, dims=1,
                  options::LnOptions=ln_options())
    desc, D = tensor_desc(x, dims)
    samesize(y, x, "y")
    checklen(gamma, D, "gamma")
    rs = Vector{Float32}(undef, rowcount(x, D))
    GC.@preserve x y gamma rs begin
        check(ccall(sym(:nk_rmsnorm_forward), Int32,
                    (Ref{TensorDesc}, Ref{LnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(y), ptr(gamma), pointer(rs)))
    end
    return rs
end
rmsnorm(x::DenseArray{Float32}; kw...) = (y = similar(x); (y, rmsnorm!(y, x; kw...)))

function rmsnorm_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                           saved_rstd::DenseArray{Float32}; gamma::F32=nothing, dgamma::F32=nothing,
                           dims=1, options::LnOptions=ln_options())
    desc, D = tensor_desc(x, dims)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    checklen(gamma, D, "gamma"); checklen(dgamma, D, "dgamma")
    checklen(saved_rstd, rowcount(x, D), "saved_rstd")
    GC.@preserve x dy dx gamma dgamma saved_rstd begin
        check(ccall(sym(:nk_rmsnorm_backward), Int32,
                    (Ref{TensorDesc}, Ref{LnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cvoid}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(dy), ptr(gamma), pointer(saved_rstd), pointer(dx),
                    ptr(dgamma)))
    end
    return dx
end
function rmsnorm_backward(x, dy, saved_rstd; dims=1, kw...)
    _, D = tensor_desc(x, dims)
    dg = Vector{Float32}(undef, D)
    return rmsnorm_backward!(similar(x), x, dy, saved_rstd; dgamma=dg, dims=dims, kw...), dg
end

sn_k(o::SnOptions) = o.use_bn != 0 ? 3 : 2

"""
    switchnorm_training!(y, x, mean_weight, var_weight; gamma, beta, moving_mean, moving_var,
                         dims, options=sn_options())

Switchable Norm; weights are the raw (pre-softmax) IN, LN[, BN] weights.
"""
function switchnorm_training!(y::DenseArray{Float32}, x::DenseArray{Float32},
                              mean_weight::DenseArray{Float32}, var_weight::DenseArray{Float32};
                              gamma::F32=nothing, beta::F32=nothing, moving_mean::F32=nothing,
                              moving_var::F32=nothing, dims=default_dims(x), options::SnOptions=sn_options())
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    (moving_mean === nothing) == (moving_var === nothing) ||
        throw(ArgumentError("moving_mean and moving_var: both or neither"))
    K = sn_k(options)
    foreach(((a, n, l),) -> checklen(a, l, n),
            ((gamma, "gamma", C), (beta, "beta", C), (moving_mean, "moving_mean", C),
             (moving_var, "moving_var", C), (mean_weight, "mean_weight", K), (var_weight, "var_weight", K)))
    GC.@preserve x y gamma beta mean_weight var_weight moving_mean moving_var begin
        check(ccall(sym(:nk_switchnorm_forward_training), Int32,
                    (Ref{TensorDesc}, Ref{SnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(y), ptr(gamma), ptr(beta), pointer(mean_weight),
                    pointer(var_weight), ptr(moving_mean), ptr(moving_var)))
    end
    return y
end

function switchnorm_inference!(y::DenseArray{Float32}, x::DenseArray{Float32},
                               mean_weight::DenseArray{Float32}, var_weight::DenseArray{Float32};
                               gamma::F32=nothing, beta::F32=nothing, moving_mean::F32=nothing,
                               moving_var::F32=nothing, dims=default_dims(x), options::SnOptions=sn_options())
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    K = sn_k(options)
    foreach(((a, n, l),) -> checklen(a, l, n),
            ((gamma, "gamma", C), (beta, "beta", C), (moving_mean, "moving_mean", C),
             (moving_var, "moving_var", C), (mean_weight, "mean_weight", K), (var_weight, "var_weight", K)))
    GC.@preserve x y gamma beta mean_weight var_weight moving_mean moving_var begin
        check(ccall(sym(:nk_switchnorm_forward_inference), Int32,
                    (Ref{TensorDesc}, Ref{SnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(y), ptr(gamma), ptr(beta), pointer(mean_weight),
                    pointer(var_weight), ptr(moving_mean), ptr(moving_var)))
    end
    return y
end

function switchnorm_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                              mean_weight::DenseArray{Float32}, var_weight::DenseArray{Float32};
                              gamma::F32=nothing, dgamma::F32=nothing, dbeta::F32=nothing,
                              dmean_weight::F32=nothing, dvar_weight::F32=nothing,
                              dims=default_dims(x), options::SnOptions=sn_options())
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    K = sn_k(options)
    foreach(((a, n, l),) -> checklen(a, l, n),
            ((gamma, "gamma", C), (dgamma, "dgamma", C), (dbeta, "dbeta", C),
             (mean_weight, "mean_weight", K), (var_weight, "var_weight", K),
             (dmean_weight, "dmean_weight", K), (dvar_weight, "dvar_weight", K)))
    GC.@preserve x dy dx gamma mean_weight var_weight dgamma dbeta dmean_weight dvar_weight begin
        check(ccall(sym(:nk_switchnorm_backward), Int32,
                    (Ref{TensorDesc}, Ref{SnOptions}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), pointer(x), pointer(dy), ptr(gamma), pointer(mean_weight),
                    pointer(var_weight), pointer(dx), ptr(dgamma), ptr(dbeta), ptr(dmean_weight),
                    ptr(dvar_weight)))
    end
    return dx
end
"""`switchnorm_backward(x, dy, mean_weight, var_weight; gamma, dims, options)
-> (dx, dgamma, dbeta, dmean_weight, dvar_weight)`"""
function switchnorm_backward(x, dy, mean_weight, var_weight; dims=default_dims(x),
                             options::SnOptions=sn_options(), kw...)
    _, C = tensor_desc(x, dims)
    K = sn_k(options)
    dg, db = Vector{Float32}(undef, C), Vector{Float32}(undef, C)
    dmw, dvw = Vector{Float32}(undef, K), Vector{Float32}(undef, K)
    dx = switchnorm_backward!(similar(x), x, dy, mean_weight, var_weight; dgamma=dg, dbeta=db,
                              dmean_weight=dmw, dvar_weight=dvw, dims=dims, options=options, kw...)
    return dx, dg, db, dmw, dvw
end

# ---- normalization fused with a residual add and an activation ------------------------------
#
# y = act(norm(x) + residual), for Batch Norm (every option of bn_training_ex!) and Group Norm.
# `act`: `nothing` (identity), :relu, :leaky_relu (`act_param` the slope, default 0.01), :elu
# (`act_param` alpha, default 1.0), :selu, or an NK_ACT_* integer, passed to C as is.
# `residual`: optional, x's size. Backward takes the forward's x, residual, gamma, beta, act
# and saved statistics: dx, dresidual = act'(z) * dy (only with a residual), dgamma, dbeta.

export ACT_NONE, ACT_RELU, ACT_LEAKY_RELU, ACT_ELU, ACT_SELU,
       bn_act_training!, bn_act_training, bn_act_inference!, bn_act_inference,
       bn_act_backward!, bn_act_backward,
       groupnorm_act!, groupnorm_act, groupnorm_act_backward!, groupnorm_act_backward

const ACT_NONE, ACT_RELU, ACT_LEAKY_RELU, ACT_ELU, ACT_SELU = Int32(0), Int32(1), Int32(2), Int32(3), Int32(4)
const ACTIVATIONS = Dict(:none => ACT_NONE, :relu => ACT_RELU, :leaky_relu => ACT_LEAKY_RELU,
                         :elu => ACT_ELU, :selu => ACT_SELU)

"""The (act, act_param) arguments of C for `act` and `act_param`."""
function activation(act, act_param)
    code = if act === nothing
        ACT_NONE
    elseif act isa Integer
        Int32(act)
    elseif act isa Symbol && haskey(ACTIVATIONS, act)
        ACTIVATIONS[act]
    else
        throw(ArgumentError("act must be nothing, one of $(sort!(collect(keys(ACTIVATIONS)))) or an NK_ACT_* integer, not $(repr(act))"))
    end
    p = act_param !== nothing ? Float32(act_param) :
        code == ACT_LEAKY_RELU ? 0.01f0 : code == ACT_ELU ? 1f0 : 0f0
    return code, p
end

"""
    bn_act_training!(y, x, state; residual, act, act_param, gamma, beta, dims, options) -> y

y = act(BN(x) + residual) with the batch statistics: `bn_training_ex!` with the add and the
activation fused in. `state` (`BnStateArrays`) updated; its saved arrays, allocated where
`nothing`, are what `bn_act_backward!` needs.
"""
function bn_act_training!(y::DenseArray{Float32}, x::DenseArray{Float32}, state::BnStateArrays;
                          residual::F32=nothing, act=nothing, act_param=nothing, gamma::F32=nothing,
                          beta::F32=nothing, dims=default_dims(x), options::BnOptions=bn_options())
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    residual === nothing || samesize(residual, x, "residual")
    checklen(gamma, C, "gamma"); checklen(beta, C, "beta")
    code, param = activation(act, act_param)
    G = groups(options, size(x, ndims(x)))
    alloc_saved!(state, C, G, options)
    a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11 = (getfield(state, f) for f in fieldnames(BnStateArrays))
    s = state
    GC.@preserve x residual y gamma beta a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 begin  # @preserve takes names only
        raw = Ref(raw_state(s, C, G))
        check(ccall(sym(:nk_bn_act_forward_training), Int32,
                    (Ref{TensorDesc}, Ref{BnOptions}, Int32, Cfloat, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid},
                     Ptr{Cfloat}, Ptr{Cfloat}, Ref{BnState}),
                    desc, own(options), code, param, pointer(x), ptr(residual), pointer(y), ptr(gamma),
                    ptr(beta), raw))
    end
    return y
end
"""`bn_act_training(x, state; kw...) -> y`"""
bn_act_training(x::DenseArray{Float32}, state::BnStateArrays; kw...) = bn_act_training!(similar(x), x, state; kw...)

"""
    bn_act_inference!(y, x, moving_mean, moving_var; residual, act, act_param, gamma, beta, dims, options) -> y

y = act(BN(x) + residual) with the moving statistics.
"""
function bn_act_inference!(y::DenseArray{Float32}, x::DenseArray{Float32}, moving_mean::DenseArray{Float32},
                           moving_var::DenseArray{Float32}; residual::F32=nothing, act=nothing,
                           act_param=nothing, gamma::F32=nothing, beta::F32=nothing,
                           dims=default_dims(x), options::BnOptions=bn_options())
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    residual === nothing || samesize(residual, x, "residual")
    foreach(((a, n),) -> checklen(a, C, n),
            ((gamma, "gamma"), (beta, "beta"), (moving_mean, "moving_mean"), (moving_var, "moving_var")))
    code, param = activation(act, act_param)
    GC.@preserve x residual y gamma beta moving_mean moving_var begin
        check(ccall(sym(:nk_bn_act_forward_inference), Int32,
                    (Ref{TensorDesc}, Ref{BnOptions}, Int32, Cfloat, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid},
                     Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), code, param, pointer(x), ptr(residual), pointer(y), ptr(gamma),
                    ptr(beta), pointer(moving_mean), pointer(moving_var)))
    end
    return y
end
bn_act_inference(x, moving_mean, moving_var; kw...) = bn_act_inference!(similar(x), x, moving_mean, moving_var; kw...)

"""
    bn_act_backward!(dx, x, dy, state; residual, dresidual, act, act_param, gamma, beta, dgamma, dbeta, dims, options) -> dx

Backward of `bn_act_training!` from the state it filled: dx (may be dy); dresidual
(only with a residual), dgamma and dbeta filled when given.
"""
function bn_act_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                          state::BnStateArrays; residual::F32=nothing, dresidual::F32=nothing,
                          act=nothing, act_param=nothing, gamma::F32=nothing, beta::F32=nothing,
                          dgamma::F32=nothing, dbeta::F32=nothing, dims=default_dims(x),
                          options::BnOptions=bn_options())
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    residual === nothing || samesize(residual, x, "residual")
    dresidual === nothing || samesize(dresidual, x, "dresidual")
    foreach(((a, n),) -> checklen(a, C, n),
            ((gamma, "gamma"), (beta, "beta"), (dgamma, "dgamma"), (dbeta, "dbeta")))
    code, param = activation(act, act_param)
    G = groups(options, size(x, ndims(x)))
    a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11 = (getfield(state, f) for f in fieldnames(BnStateArrays))
    s = state
    GC.@preserve x residual dy dx dresidual gamma beta dgamma dbeta a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 begin
        raw = Ref(raw_state(s, C, G))
        check(ccall(sym(:nk_bn_act_backward), Int32,
                    (Ref{TensorDesc}, Ref{BnOptions}, Int32, Cfloat, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid},
                     Ptr{Cfloat}, Ptr{Cfloat}, Ref{BnState}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat},
                     Ptr{Cfloat}),
                    desc, own(options), code, param, pointer(x), ptr(residual), pointer(dy), ptr(gamma),
                    ptr(beta), raw, pointer(dx), ptr(dresidual), ptr(dgamma), ptr(dbeta)))
    end
    return dx
end
"""`bn_act_backward(x, dy, state; residual, kw...) -> (dx, dresidual, dgamma, dbeta)`
(dresidual `nothing` without a residual)."""
function bn_act_backward(x, dy, state; residual=nothing, dims=default_dims(x), kw...)
    _, C = tensor_desc(x, dims)
    dg, db = Vector{Float32}(undef, C), Vector{Float32}(undef, C)
    dr = residual === nothing ? nothing : similar(x)
    dx = bn_act_backward!(similar(x), x, dy, state; residual=residual, dresidual=dr, dgamma=dg,
                          dbeta=db, dims=dims, kw...)
    return dx, dr, dg, db
end

"""
    groupnorm_act!(y, x; residual, act, act_param, gamma, beta, dims, options=gn_options())
        -> (saved_mean, saved_invstd)

y = act(GroupNorm(x) + residual) into `y` (may be `x`); saved arrays N*G as `groupnorm!`.
"""
function groupnorm_act!(y::DenseArray{Float32}, x::DenseArray{Float32}; residual::F32=nothing,
                        act=nothing, act_param=nothing, gamma::F32=nothing, beta::F32=nothing,
                        dims=default_dims(x), options::GnOptions=gn_options())
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    residual === nothing || samesize(residual, x, "residual")
    checklen(gamma, C, "gamma"); checklen(beta, C, "beta")
    code, param = activation(act, act_param)
    NG = batchsize(x) * max(Int(options.groups), 0)
    sm, si = Vector{Float32}(undef, NG), Vector{Float32}(undef, NG)
    GC.@preserve x residual y gamma beta sm si begin
        check(ccall(sym(:nk_groupnorm_act_forward), Int32,
                    (Ref{TensorDesc}, Ref{GnOptions}, Int32, Cfloat, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid},
                     Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), code, param, pointer(x), ptr(residual), pointer(y), ptr(gamma),
                    ptr(beta), pointer(sm), pointer(si)))
    end
    return sm, si
end
groupnorm_act(x::DenseArray{Float32}; kw...) = (y = similar(x); (y, groupnorm_act!(y, x; kw...)...))

"""
    groupnorm_act_backward!(dx, x, dy, saved_mean, saved_invstd; residual, dresidual, act, act_param,
                            gamma, beta, dgamma, dbeta, dims, options) -> dx
"""
function groupnorm_act_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                                 saved_mean::DenseArray{Float32}, saved_invstd::DenseArray{Float32};
                                 residual::F32=nothing, dresidual::F32=nothing, act=nothing,
                                 act_param=nothing, gamma::F32=nothing, beta::F32=nothing,
                                 dgamma::F32=nothing, dbeta::F32=nothing, dims=default_dims(x),
                                 options::GnOptions=gn_options())
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    residual === nothing || samesize(residual, x, "residual")
    dresidual === nothing || samesize(dresidual, x, "dresidual")
    NG = batchsize(x) * max(Int(options.groups), 0)
    foreach(((a, n, l),) -> checklen(a, l, n),
            ((gamma, "gamma", C), (beta, "beta", C), (dgamma, "dgamma", C), (dbeta, "dbeta", C),
             (saved_mean, "saved_mean", NG), (saved_invstd, "saved_invstd", NG)))
    code, param = activation(act, act_param)
    GC.@preserve x residual dy dx dresidual gamma beta dgamma dbeta saved_mean saved_invstd begin
        check(ccall(sym(:nk_groupnorm_act_backward), Int32,
                    (Ref{TensorDesc}, Ref{GnOptions}, Int32, Cfloat, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid},
                     Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cvoid},
                     Ptr{Cfloat}, Ptr{Cfloat}),
                    desc, own(options), code, param, pointer(x), ptr(residual), pointer(dy), ptr(gamma),
                    ptr(beta), pointer(saved_mean), pointer(saved_invstd), pointer(dx), ptr(dresidual),
                    ptr(dgamma), ptr(dbeta)))
    end
    return dx
end
"""`groupnorm_act_backward(x, dy, saved_mean, saved_invstd; residual, kw...) -> (dx, dresidual, dgamma, dbeta)`"""
function groupnorm_act_backward(x, dy, saved_mean, saved_invstd; residual=nothing, dims=default_dims(x), kw...)
    _, C = tensor_desc(x, dims)
    dg, db = Vector{Float32}(undef, C), Vector{Float32}(undef, C)
    dr = residual === nothing ? nothing : similar(x)
    dx = groupnorm_act_backward!(similar(x), x, dy, saved_mean, saved_invstd; residual=residual,
                                 dresidual=dr, dgamma=dg, dbeta=db, dims=dims, kw...)
    return dx, dr, dg, db
end

# ---- activations: element-wise, any shape (y may be x, dx may be dy) ------------------------

function relu!(y::DenseArray{Float32}, x::DenseArray{Float32})
    samesize(y, x, "y")
    GC.@preserve x y begin
        check(ccall(sym(:nk_relu_forward), Int32, (Int64, Ptr{Cfloat}, Ptr{Cfloat}), length(x), pointer(x), pointer(y)))
    end
    return y
end
function relu_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32})
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    GC.@preserve x dy dx begin
        check(ccall(sym(:nk_relu_backward), Int32, (Int64, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    length(x), pointer(x), pointer(dy), pointer(dx)))
    end
    return dx
end
function leaky_relu!(y::DenseArray{Float32}, x::DenseArray{Float32}, slope::Real=0.01f0)
    samesize(y, x, "y")
    GC.@preserve x y begin
        check(ccall(sym(:nk_leaky_relu_forward), Int32, (Int64, Cfloat, Ptr{Cfloat}, Ptr{Cfloat}),
                    length(x), slope, pointer(x), pointer(y)))
    end
    return y
end
function leaky_relu_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                              slope::Real=0.01f0)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    GC.@preserve x dy dx begin
        check(ccall(sym(:nk_leaky_relu_backward), Int32, (Int64, Cfloat, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    length(x), slope, pointer(x), pointer(dy), pointer(dx)))
    end
    return dx
end
function elu!(y::DenseArray{Float32}, x::DenseArray{Float32}, alpha::Real=1f0)
    samesize(y, x, "y")
    GC.@preserve x y begin
        check(ccall(sym(:nk_elu_forward), Int32, (Int64, Cfloat, Ptr{Cfloat}, Ptr{Cfloat}),
                    length(x), alpha, pointer(x), pointer(y)))
    end
    return y
end
function elu_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                       alpha::Real=1f0)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    GC.@preserve x dy dx begin
        check(ccall(sym(:nk_elu_backward), Int32, (Int64, Cfloat, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    length(x), alpha, pointer(x), pointer(dy), pointer(dx)))
    end
    return dx
end
function selu!(y::DenseArray{Float32}, x::DenseArray{Float32})
    samesize(y, x, "y")
    GC.@preserve x y begin
        check(ccall(sym(:nk_selu_forward), Int32, (Int64, Ptr{Cfloat}, Ptr{Cfloat}), length(x), pointer(x), pointer(y)))
    end
    return y
end
function selu_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32})
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    GC.@preserve x dy dx begin
        check(ccall(sym(:nk_selu_backward), Int32, (Int64, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cfloat}),
                    length(x), pointer(x), pointer(dy), pointer(dx)))
    end
    return dx
end
selu_alpha() = ccall(sym(:nk_selu_alpha), Cdouble, ())
selu_lambda() = ccall(sym(:nk_selu_lambda), Cdouble, ())

"""`prelu!(y, x, slope; dims)`: slope has C (features of `dims`) or 1 element."""
function prelu!(y::DenseArray{Float32}, x::DenseArray{Float32}, slope::DenseArray{Float32};
                dims=default_dims(x))
    desc, C = tensor_desc(x, dims)
    samesize(y, x, "y")
    length(slope) in (1, C) || throw(DimensionMismatch("slope has $(length(slope)) elements, needs 1 or $C"))
    GC.@preserve x y slope begin
        check(ccall(sym(:nk_prelu_forward), Int32,
                    (Ref{TensorDesc}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Int64),
                    desc, pointer(x), pointer(y), pointer(slope), length(slope)))
    end
    return y
end
"""`prelu_backward!(dx, x, dy, slope; dslope, dims)`: dslope (length(slope)) filled when given."""
function prelu_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32},
                         slope::DenseArray{Float32}; dslope::F32=nothing, dims=default_dims(x))
    desc, C = tensor_desc(x, dims)
    samesize(dy, x, "dy"); samesize(dx, x, "dx")
    length(slope) in (1, C) || throw(DimensionMismatch("slope has $(length(slope)) elements, needs 1 or $C"))
    checklen(dslope, length(slope), "dslope")
    GC.@preserve x dy dx slope dslope begin
        check(ccall(sym(:nk_prelu_backward), Int32,
                    (Ref{TensorDesc}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Int64, Ptr{Cvoid}, Ptr{Cfloat}),
                    desc, pointer(x), pointer(dy), pointer(slope), length(slope), pointer(dx), ptr(dslope)))
    end
    return dx
end

"""`crelu(x; dims) -> y`: concat(relu(x), relu(-x)) along the one feature dim, doubled in y."""
function crelu(x::DenseArray{Float32}; dims::Integer=default_dims(x))
    desc, C = tensor_desc(x, dims)
    y = Array{Float32}(undef, ntuple(i -> i == dims ? 2 * size(x, i) : size(x, i), ndims(x)))
    GC.@preserve x y begin
        check(ccall(sym(:nk_crelu_forward), Int32, (Ref{TensorDesc}, Ptr{Cvoid}, Ptr{Cvoid}),
                    desc, pointer(x), pointer(y)))
    end
    return y
end
function crelu_backward!(dx::DenseArray{Float32}, x::DenseArray{Float32}, dy::DenseArray{Float32};
                         dims::Integer=default_dims(x))
    desc, C = tensor_desc(x, dims)
    samesize(dx, x, "dx")
    size(dy) == ntuple(i -> i == dims ? 2 * size(x, i) : size(x, i), ndims(x)) ||
        throw(DimensionMismatch("dy has size $(size(dy)); needs x's with dim $dims doubled"))
    GC.@preserve x dy dx begin
        check(ccall(sym(:nk_crelu_backward), Int32, (Ref{TensorDesc}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}),
                    desc, pointer(x), pointer(dy), pointer(dx)))
    end
    return dx
end

# ---- AlphaDropout and LeCun-normal init -----------------------------------------------------

"""`alpha_dropout!(y, x, rate, seed, offset=0)`; the backward takes the same seed and offset."""
function alpha_dropout!(y::DenseArray{Float32}, x::DenseArray{Float32}, rate::Real, seed::Integer,
                        offset::Integer=0)
    samesize(y, x, "y")
    GC.@preserve x y begin
        check(ccall(sym(:nk_alpha_dropout_forward), Int32,
                    (Int64, Cfloat, UInt64, UInt64, Ptr{Cfloat}, Ptr{Cfloat}),
                    length(x), rate, seed, offset, pointer(x), pointer(y)))
    end
    return y
end
function alpha_dropout_backward!(dx::DenseArray{Float32}, dy::DenseArray{Float32}, rate::Real,
                                 seed::Integer, offset::Integer=0)
    samesize(dx, dy, "dx")
    GC.@preserve dy dx begin
        check(ccall(sym(:nk_alpha_dropout_backward), Int32,
                    (Int64, Cfloat, UInt64, UInt64, Ptr{Cfloat}, Ptr{Cfloat}),
                    length(dy), rate, seed, offset, pointer(dy), pointer(dx)))
    end
    return dx
end
"""`lecun_normal_init!(w, fan_in; truncated=false, seed=0, offset=0)`: N(0, 1/fan_in)."""
function lecun_normal_init!(w::DenseArray{Float32}, fan_in::Integer; truncated::Bool=false,
                            seed::Integer=0, offset::Integer=0)
    GC.@preserve w begin
        check(ccall(sym(:nk_lecun_normal_init), Int32, (Int64, Int64, Int32, UInt64, UInt64, Ptr{Cfloat}),
                    length(w), fan_in, truncated ? LECUN_TRUNCATED : LECUN_NORMAL, seed, offset, pointer(w)))
    end
    return w
end

# ---- layer -----------------------------------------------------------------------------------

"""
    BatchNorm(channels; dims=nothing, trainable=true, options...)

A Batch Norm layer holding its variables as tf.keras does: gamma = 1, beta = 0,
moving mean 0, moving variance 1. `forward!(layer, x; training)`, then
`backward(layer, x, dy) -> dx` (x of that forward) sets `layer.dgamma`, `layer.dbeta`.

TF2 rule: a layer with `trainable == false` (frozen) always runs in inference mode,
even with `training=true`: it uses, and leaves unchanged, the moving statistics.
`backward` follows the mode of the last `forward!`: after a training-mode one, Batch
Norm's training gradient; after an inference-mode one (`training=false`, or a frozen
layer), or before any, the gradient with the moving statistics constant:
`dx = dy * gamma / sqrt(moving_var + epsilon)` per feature, `dbeta = sum(dy)`,
`dgamma = sum(dy * (x - moving_mean) / sqrt(moving_var + epsilon))`. A frozen layer
(`trainable` false when `backward` runs) gets `dgamma` and `dbeta` filled with zeros.
"""
mutable struct BatchNorm
    options::BnOptions
    dims::Any
    gamma::Vector{Float32}
    beta::Vector{Float32}
    moving_mean::Vector{Float32}
    moving_var::Vector{Float32}
    dgamma::Vector{Float32}
    dbeta::Vector{Float32}
    saved::Union{Nothing,Tuple{Vector{Float32},Vector{Float32}}}  # nothing: last forward in inference mode
    trainable::Bool
end
BatchNorm(channels::Integer; dims=nothing, trainable::Bool=true, kw...) =
    BatchNorm(bn_options(; kw...), dims, ones(Float32, channels), zeros(Float32, channels),
              zeros(Float32, channels), ones(Float32, channels), zeros(Float32, channels),
              zeros(Float32, channels), nothing, trainable)

function forward!(l::BatchNorm, x::DenseArray{Float32}; training::Bool=false)
    dims = something(l.dims, default_dims(x))
    if training && l.trainable
        y, sm, si = bn_training(x; gamma=l.gamma, beta=l.beta, moving_mean=l.moving_mean,
                                moving_var=l.moving_var, dims=dims, options=l.options)
        l.saved = (sm, si)
        return y
    end
    y = bn_inference(x, l.moving_mean, l.moving_var; gamma=l.gamma, beta=l.beta, dims=dims,
                     options=l.options)
    l.saved = nothing
    return y
end

function backward(l::BatchNorm, x::DenseArray{Float32}, dy::DenseArray{Float32})
    dims = something(l.dims, default_dims(x))
    if l.saved !== nothing  # training mode
        l.trainable && return bn_backward!(similar(x), x, dy, l.saved...; gamma=l.gamma,
                                           dgamma=l.dgamma, dbeta=l.dbeta, dims=dims, options=l.options)
        fill!(l.dgamma, 0f0); fill!(l.dbeta, 0f0)
        return bn_backward!(similar(x), x, dy, l.saved...; gamma=l.gamma, dims=dims, options=l.options)
    end
    # Inference mode: the moving statistics are constants. bn_backward_apply! with zero
    # sums leaves dx = gamma * invstd * dy whatever the count (this batch's own, the
    # least the library accepts); bn_backward_reduce with the same mean and invstd gives
    # dbeta = sum(dy) and dgamma = sum(dy * xhat).
    C = length(l.moving_mean)
    invstd = Float32.(1 ./ sqrt.(Float64.(l.moving_var) .+ Float64(l.options.epsilon)))
    z = zeros(Float64, C)
    dx = bn_backward_apply!(similar(x), x, dy, length(x) ÷ C, l.moving_mean, invstd, z, z;
                            gamma=l.gamma, dims=dims)
    if l.trainable
        sum_dy, sum_dy_xhat = bn_backward_reduce(x, dy, l.moving_mean, invstd; dims=dims)
        l.dgamma .= Float32.(sum_dy_xhat)
        l.dbeta .= Float32.(sum_dy)
    else
        fill!(l.dgamma, 0f0); fill!(l.dbeta, 0f0)
    end
    return dx
end

end # module
