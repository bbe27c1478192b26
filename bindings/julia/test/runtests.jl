# NormKit.jl against Float64 references. Needs ENV["NORMKIT_LIB"] (path of
# libnormkit.so). NOT RUN on the machines this was written on (no Julia there);
# bindings/julia/check_ccalls.py checks every ccall against normkit.h instead.
using Test
using NormKit

relerr(got, want) = maximum(abs.(Float64.(got) .- want) ./ max.(abs.(want), 1.0))

"""Float64 BN over every dim but `d` (one feature dim, Julia numbering)."""
function ref_bn(x, d; gamma=nothing, beta=nothing, eps=1e-3, dy=nothing)
    red = Tuple(i for i in 1:ndims(x) if i != d)
    xd = Float64.(x)
    m = prod(size(x, i) for i in red)
    mean = sum(xd; dims=red) ./ m
    var = sum((xd .- mean) .^ 2; dims=red) ./ m
    shp = ntuple(i -> i == d ? size(x, d) : 1, ndims(x))
    g = gamma === nothing ? ones(shp) : reshape(Float64.(gamma), shp)
    b = beta === nothing ? zeros(shp) : reshape(Float64.(beta), shp)
    xhat = (xd .- mean) ./ sqrt.(var .+ eps)
    y = g .* xhat .+ b
    dy === nothing && return (; y, mean=vec(mean), var=vec(var))
    dyd = Float64.(dy)
    sdy = sum(dyd; dims=red)
    sdyx = sum(dyd .* xhat; dims=red)
    dx = g ./ sqrt.(var .+ eps) .* (dyd .- sdy ./ m .- xhat .* sdyx ./ m)
    return (; y, mean=vec(mean), var=vec(var), dx, dgamma=vec(sdyx), dbeta=vec(sdy))
end

@testset "NormKit" begin
    @test NormKit.version()[1] == NormKit.BINDING_MAJOR
    @test NormKit.version_string() == join(NormKit.version(), ".")

    @testset "memory order: (W, H, C, N) is NCHW" begin
        x = randn(Float32, 5, 4, 3, 2)          # W, H, C, N
        desc, C = NormKit.tensor_desc(x, 3)
        @test C == 3
        @test desc.ndim == 4 && desc.dims[1:4] == (2, 3, 4, 5)   # N, C, H, W
        @test desc.num_axes == 1 && desc.axes[1] == 1
        cd = NormKit.c_tensor_desc([2, 3, 4, 5], 1)
        @test cd.ndim == 4 && cd.dims[1:4] == desc.dims[1:4] && cd.num_axes == 1 && cd.axes[1] == 1
        desc, C = NormKit.tensor_desc(randn(Float32, 3, 5, 4, 2), 1)  # (C, W, H, N) is NHWC
        @test desc.dims[1:4] == (2, 4, 5, 3) && desc.axes[1] == 3
        # The same data in both orders normalizes alike.
        xn = permutedims(x, (3, 1, 2, 4))
        @test relerr(permutedims(bn_training(xn; dims=1)[1], (2, 3, 1, 4)), Float64.(bn_training(x)[1])) < 1e-5
    end

    @testset "training forward and backward ($(size(x)), dims=$d)" for (x, d) in (
            (randn(Float32, 7, 4, 5, 3) .* 2 .+ 1000, 3), (randn(Float32, 5, 6, 4, 2), 1),
            (randn(Float32, 33, 9), 1), (randn(Float32, 3, 2, 4, 5, 2), 4))
        C = size(x, d)
        g, b = randn(Float32, C), randn(Float32, C)
        mm, mv = zeros(Float32, C), ones(Float32, C)
        dy = randn(Float32, size(x))
        y, sm, si = bn_training(x; gamma=g, beta=b, moving_mean=mm, moving_var=mv, dims=d)
        r = ref_bn(x, d; gamma=g, beta=b, dy=dy)
        @test relerr(y, r.y) < 3e-4
        @test relerr(sm, r.mean) < 1e-6
        mo = Float64(0.99f0)
        @test relerr(mm, (1 - mo) .* r.mean) < 1e-6
        @test relerr(mv, mo .+ (1 - mo) .* r.var) < 1e-5
        dx, dg, db = bn_backward(x, dy, sm, si; gamma=g, dims=d)
        @test relerr(dx, r.dx) < 1e-3
        @test relerr(dg, r.dgamma) < 1e-3
        @test relerr(db, r.dbeta) < 1e-5
    end

    @testset "inference and torch conventions" begin
        x = randn(Float32, 4, 3, 6, 2)
        mm, mv = randn(Float32, 6), rand(Float32, 6) .+ 0.5f0
        y = bn_inference(x, mm, mv)
        want = (Float64.(x) .- reshape(Float64.(mm), 1, 1, 6, 1)) ./ sqrt.(reshape(Float64.(mv), 1, 1, 6, 1) .+ 1e-3)
        @test relerr(y, want) < 1e-5
        o = bn_options(epsilon=1e-5, momentum=0.1, momentum_convention=:torch, moving_variance=:unbiased)
        mm, mv = zeros(Float32, 6), ones(Float32, 6)
        bn_training(x; moving_mean=mm, moving_var=mv, options=o)
        r = ref_bn(x, 3; eps=1e-5)
        m = 4 * 3 * 2
        @test relerr(mv, 0.9 .+ 0.1 .* r.var .* m ./ (m - 1)) < 1e-6
    end

    @testset "split statistics equal the whole batch" begin
        parts = [2, 3, 6]
        x = randn(Float32, 5, 3, 7, sum(parts)) .* 2 .+ 5
        dy = randn(Float32, size(x))
        g, b = randn(Float32, 7), randn(Float32, 7)
        o = bn_options(epsilon=1e-5, momentum=0.1, momentum_convention=:torch, moving_variance=:unbiased)
        mm, mv = zeros(Float32, 7), ones(Float32, 7)
        y, sm, si = bn_training(x; gamma=g, beta=b, moving_mean=mm, moving_var=mv, options=o)
        dx, dg, db = bn_backward(x, dy, sm, si; gamma=g, options=o)
        ranges = [sum(parts[1:p-1])+1:sum(parts[1:p]) for p in eachindex(parts)]
        xs = [x[:, :, :, r] for r in ranges]
        dys = [dy[:, :, :, r] for r in ranges]
        st = [bn_partial_stats(xp) for xp in xs]
        count, mean, m2 = bn_merge_stats([s[1] for s in st], hcat([s[2] for s in st]...), hcat([s[3] for s in st]...))
        @test count == length(x) ÷ 7
        gmm, gmv = zeros(Float32, 7), ones(Float32, 7)
        gm, gi = bn_finalize_stats(count, mean, m2; moving_mean=gmm, moving_var=gmv, options=o)
        @test relerr(gm, Float64.(sm)) < 1e-6 && relerr(gi, Float64.(si)) < 1e-6
        @test relerr(gmm, Float64.(mm)) < 1e-6 && relerr(gmv, Float64.(mv)) < 1e-6
        ys = [bn_apply!(similar(xp), xp, gm, gi; gamma=g, beta=b) for xp in xs]
        @test relerr(cat(ys...; dims=4), Float64.(y)) < 1e-5
        red = [bn_backward_reduce(xp, dyp, gm, gi) for (xp, dyp) in zip(xs, dys)]
        s1, s2 = sum(first.(red)), sum(last.(red))
        @test relerr(s1, Float64.(db)) < 1e-5 && relerr(s2, Float64.(dg)) < 1e-5
        dxs = [bn_backward_apply!(similar(xp), xp, dyp, count, gm, gi, s1, s2; gamma=g) for (xp, dyp) in zip(xs, dys)]
        @test relerr(cat(dxs...; dims=4), Float64.(dx)) < 1e-5
    end

    @testset "errors" begin
        x = zeros(Float32, 3, 2)
        e = try bn_training(x; options=bn_options(epsilon=0)); nothing catch err; err end
        @test e isa NormKitError && e.status == 4 && occursin("epsilon", e.message)
        @test_throws DimensionMismatch bn_training(x; gamma=ones(Float32, 4))
        @test_throws ArgumentError bn_training(x; dims=3)
        @test_throws NormKitError set_max_isa("pentium")
        @test_throws ArgumentError bn_options(bogus=1)
    end

    @testset "ISAs agree; settings" begin
        x = randn(Float32, 6, 37, 3)
        ys = []
        for isa in ("avx512", "avx2", "sse2", "neon", "scalar")
            isa_available(isa) || continue
            set_max_isa(isa)
            @test active_isa() == isa
            push!(ys, bn_training(x)[1])
        end
        set_max_isa(nothing)
        @test all(relerr(y, Float64.(ys[1])) < 1e-5 for y in ys)
        set_stream_threshold(4096); @test stream_threshold() == 4096; set_stream_threshold(-1)
        set_num_threads(1); @test num_threads() == 1; set_num_threads(0)
    end

    @testset "layer starts like Keras" begin
        l = BatchNorm(3)
        @test all(l.gamma .== 1) && all(l.beta .== 0) && all(l.moving_mean .== 0) && all(l.moving_var .== 1)
        x = randn(Float32, 4, 4, 3, 5) .* 3 .+ 2
        dy = randn(Float32, size(x))
        @test relerr(forward!(l, x), Float64.(x) ./ sqrt(1 + 1e-3)) < 1e-6
        y = forward!(l, x; training=true)
        r = ref_bn(x, 3; dy=dy)
        @test relerr(y, r.y) < 1e-5
        @test relerr(backward(l, x, dy), r.dx) < 1e-4
        @test relerr(l.dgamma, r.dgamma) < 1e-4
    end

    if NormKit.has_function(:nk_bn_forward_training_ex)
        @testset "ex without extras equals training" begin
            x = randn(Float32, 5, 4, 3, 2)
            dy = randn(Float32, size(x))
            s = BnStateArrays(moving_mean=zeros(Float32, 4), moving_var=ones(Float32, 4))
            y = bn_training_ex!(similar(x), x, s; dims=2)
            r = ref_bn(x, 2; dy=dy)
            @test relerr(y, r.y) < 1e-5
            @test relerr(bn_backward_ex!(similar(x), x, dy, s; dims=2), r.dx) < 1e-4
        end
    else
        @info "nk_bn_forward_training_ex not in this libnormkit: its tests are skipped"
    end
end
