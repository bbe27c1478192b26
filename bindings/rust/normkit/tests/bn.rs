//! Each op against a float64 reference written here.
use normkit::*;

/// Deterministic N(mean, sd) floats (64-bit LCG, Box-Muller).
fn normal(n: usize, seed: u64, mean: f64, sd: f64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 + 0.5) / 9007199254740992.0
    };
    (0..n).map(|_| (mean + sd * (-2.0 * next().ln()).sqrt() * (6.283185307179586 * next()).cos()) as f32).collect()
}

/// max |got - want| / max(|want|, 1)
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs() / w.abs().max(1.0)).fold(0.0, |a, e| if e.is_nan() { f64::INFINITY } else { a.max(e) })
}

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let e = rel_err(got, want);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

/// The feature index of each element of a row-major tensor with one feature axis.
fn feature_of(dims: &[i64], axis: usize) -> Vec<usize> {
    let inner: i64 = dims[axis + 1..].iter().product();
    let len: i64 = dims.iter().product();
    (0..len).map(|i| ((i / inner) % dims[axis]) as usize).collect()
}

struct Ref {
    y: Vec<f64>,
    mean: Vec<f64>,
    var: Vec<f64>,
    dx: Vec<f64>,
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
}

/// float64 Batch Norm forward and backward over one feature axis.
fn reference(dims: &[i64], axis: usize, x: &[f32], dy: &[f32], gamma: Option<&[f32]>, beta: Option<&[f32]>, eps: f64) -> Ref {
    let c = dims[axis] as usize;
    let f = feature_of(dims, axis);
    let m = (x.len() / c) as f64;
    let mut mean = vec![0.0; c];
    for (i, &v) in x.iter().enumerate() {
        mean[f[i]] += v as f64 / m;
    }
    let mut var = vec![0.0; c];
    for (i, &v) in x.iter().enumerate() {
        var[f[i]] += (v as f64 - mean[f[i]]).powi(2) / m;
    }
    let g = |k: usize| gamma.map_or(1.0, |g| g[k] as f64);
    let b = |k: usize| beta.map_or(0.0, |b| b[k] as f64);
    let xhat: Vec<f64> = x.iter().enumerate().map(|(i, &v)| (v as f64 - mean[f[i]]) / (var[f[i]] + eps).sqrt()).collect();
    let y = xhat.iter().enumerate().map(|(i, &h)| g(f[i]) * h + b(f[i])).collect();
    let (mut dbeta, mut dgamma) = (vec![0.0; c], vec![0.0; c]);
    for i in 0..x.len() {
        dbeta[f[i]] += dy[i] as f64;
        dgamma[f[i]] += dy[i] as f64 * xhat[i];
    }
    let dx = (0..x.len())
        .map(|i| {
            let k = f[i];
            g(k) / (var[k] + eps).sqrt() * (dy[i] as f64 - dbeta[k] / m - xhat[i] * dgamma[k] / m)
        })
        .collect();
    Ref { y, mean, var, dx, dgamma, dbeta }
}

fn layouts() -> Vec<(Layout, Vec<i64>, usize)> {
    vec![
        (Layout::nchw(3, 5, 4, 7), vec![3, 5, 4, 7], 1),
        (Layout::nhwc(2, 3, 5, 17), vec![2, 3, 5, 17], 3),
        (Layout::nc(9, 33), vec![9, 33], 1),
        (Layout::new(&[2, 4, 3, 2, 5], &[1]).unwrap(), vec![2, 4, 3, 2, 5], 1),
    ]
}

#[test]
fn forward_training_and_backward_tf_defaults() {
    for (layout, dims, axis) in layouts() {
        let c = layout.channels();
        let x = normal(layout.len(), 1, 1e3, 0.5); // large offset, small spread
        let dy = normal(layout.len(), 2, 0.0, 1.0);
        let gamma = normal(c, 3, 1.0, 0.5);
        let beta = normal(c, 4, 0.0, 1.0);
        let opt = BnOptions::default();
        let (mut y, mut sm, mut si) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
        let (mut mm, mut mv) = (vec![0.0; c], vec![1.0; c]);
        bn_forward_training(&layout, &opt, &x, &mut y, Some(&gamma), Some(&beta), Some(Saved { mean: &mut sm, invstd: &mut si }), Some((&mut mm, &mut mv))).unwrap();
        let r = reference(&dims, axis, &x, &dy, Some(&gamma), Some(&beta), 1e-3);
        let what = format!("{dims:?}");
        // x itself is rounded to 1e3 * 2^-24; y = (x - mean) / 0.5 carries that twice.
        assert_close(&format!("{what} y"), &y, &r.y, 2e-4);
        assert_close(&format!("{what} mean"), &sm, &r.mean, 1e-6);
        let invstd: Vec<f64> = r.var.iter().map(|v| 1.0 / (v + 1e-3).sqrt()).collect();
        assert_close(&format!("{what} invstd"), &si, &invstd, 1e-4);
        let mo = 0.99f32 as f64; // the momentum the library is given
        let want_mm: Vec<f64> = r.mean.iter().map(|m| (1.0 - mo) * m).collect();
        let want_mv: Vec<f64> = r.var.iter().map(|v| mo + (1.0 - mo) * v).collect();
        assert_close(&format!("{what} moving mean"), &mm, &want_mm, 1e-6);
        assert_close(&format!("{what} moving var"), &mv, &want_mv, 1e-5);
        let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
        bn_backward(&layout, &opt, &x, &dy, Some(&gamma), &sm, &si, &mut dx, Some((&mut dg, &mut db))).unwrap();
        assert_close(&format!("{what} dx"), &dx, &r.dx, 1e-3);
        assert_close(&format!("{what} dgamma"), &dg, &r.dgamma, 1e-3);
        assert_close(&format!("{what} dbeta"), &db, &r.dbeta, 1e-5);
    }
}

#[test]
fn torch_conventions_and_no_affine() {
    let layout = Layout::nchw(4, 3, 2, 5);
    let dims = [4, 3, 2, 5];
    let x = normal(layout.len(), 5, 0.0, 2.0);
    let dy = normal(layout.len(), 6, 0.0, 1.0);
    let opt = BnOptions::torch();
    let (mut y, mut mm, mut mv) = (vec![0.0; x.len()], vec![0.0; 3], vec![1.0; 3]);
    bn_forward_training(&layout, &opt, &x, &mut y, None, None, None, Some((&mut mm, &mut mv))).unwrap();
    let r = reference(&dims, 1, &x, &dy, None, None, 1e-5);
    assert_close("y", &y, &r.y, 1e-5);
    let m = 40.0;
    let want_mv: Vec<f64> = r.var.iter().map(|v| 0.9 + 0.1 * v * m / (m - 1.0)).collect();
    let want_mm: Vec<f64> = r.mean.iter().map(|v| 0.1 * v).collect();
    assert_close("running mean", &mm, &want_mm, 1e-6);
    assert_close("running var (unbiased)", &mv, &want_mv, 1e-6);
    // Not trainable: dx only.
    let (mut sm, mut si, mut y2) = (vec![0.0; 3], vec![0.0; 3], vec![0.0; x.len()]);
    bn_forward_training(&layout, &opt, &x, &mut y2, None, None, Some(Saved { mean: &mut sm, invstd: &mut si }), None).unwrap();
    let mut dx = vec![0.0; x.len()];
    bn_backward(&layout, &opt, &x, &dy, None, &sm, &si, &mut dx, None).unwrap();
    assert_close("dx", &dx, &r.dx, 1e-4);
}

#[test]
fn in_place_equals_out_of_place() {
    let layout = Layout::nhwc(3, 2, 5, 7);
    let x = normal(layout.len(), 50, 1.0, 2.0);
    let dy = normal(layout.len(), 51, 0.0, 1.0);
    let g = normal(7, 52, 1.0, 0.5);
    let opt = BnOptions::default();
    let (mut y, mut sm, mut si) = (vec![0.0; x.len()], vec![0.0; 7], vec![0.0; 7]);
    bn_forward_training(&layout, &opt, &x, &mut y, Some(&g), None, Some(Saved { mean: &mut sm, invstd: &mut si }), None).unwrap();
    let mut xy = x.clone();
    bn_forward_training_in_place(&layout, &opt, &mut xy, Some(&g), None, None, None).unwrap();
    assert_eq!(xy, y);
    let mut dx = vec![0.0; x.len()];
    bn_backward(&layout, &opt, &x, &dy, Some(&g), &sm, &si, &mut dx, None).unwrap();
    let mut dyx = dy.clone();
    bn_backward_in_place(&layout, &opt, &x, &mut dyx, Some(&g), &sm, &si, None).unwrap();
    assert_eq!(dyx, dx);
}

#[test]
fn inference() {
    let layout = Layout::nhwc(2, 3, 3, 6);
    let x = normal(layout.len(), 7, 0.0, 1.0);
    let (g, b) = (normal(6, 8, 1.0, 0.3), normal(6, 9, 0.0, 1.0));
    let mm = normal(6, 10, 0.0, 1.0);
    let mv: Vec<f32> = normal(6, 11, 0.0, 1.0).iter().map(|v| v.abs() + 0.5).collect();
    let mut y = vec![0.0; x.len()];
    bn_forward_inference(&layout, &BnOptions::default(), &x, &mut y, Some(&g), Some(&b), &mm, &mv).unwrap();
    let want: Vec<f64> = x.iter().enumerate().map(|(i, &v)| {
        let k = i % 6;
        g[k] as f64 * (v as f64 - mm[k] as f64) / (mv[k] as f64 + 1e-3).sqrt() + b[k] as f64
    }).collect();
    assert_close("y", &y, &want, 1e-5);
}

#[test]
fn split_statistics_equal_the_whole_batch() {
    let parts = [2i64, 3, 6];
    let (n, c, h, w) = (11, 7, 3, 4);
    let per = (c * h * w) as usize;
    let whole = Layout::nchw(n, c, h, w);
    let x = normal(whole.len(), 12, 5.0, 2.0);
    let dy = normal(whole.len(), 13, 0.0, 1.0);
    let gamma = normal(c as usize, 14, 1.0, 0.5);
    let beta = normal(c as usize, 15, 0.0, 0.5);
    let cu = c as usize;
    let opt = BnOptions::torch();
    let (mut y, mut sm, mut si, mut mm, mut mv) = (vec![0.0; x.len()], vec![0.0; cu], vec![0.0; cu], vec![0.0; cu], vec![1.0; cu]);
    bn_forward_training(&whole, &opt, &x, &mut y, Some(&gamma), Some(&beta), Some(Saved { mean: &mut sm, invstd: &mut si }), Some((&mut mm, &mut mv))).unwrap();
    let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; cu], vec![0.0; cu]);
    bn_backward(&whole, &opt, &x, &dy, Some(&gamma), &sm, &si, &mut dx, Some((&mut dg, &mut db))).unwrap();

    let mut counts = vec![];
    let (mut means, mut m2s) = (vec![0.0; parts.len() * cu], vec![0.0; parts.len() * cu]);
    let mut off = vec![0usize];
    for (p, &np) in parts.iter().enumerate() {
        let l = Layout::nchw(np, c, h, w);
        let (a, b) = (off[p], off[p] + l.len());
        counts.push(bn_partial_stats(&l, &x[a..b], &mut means[p * cu..(p + 1) * cu], &mut m2s[p * cu..(p + 1) * cu]).unwrap());
        off.push(b);
    }
    let (mut mean, mut m2) = (vec![0.0; cu], vec![0.0; cu]);
    let count = bn_merge_stats(&counts, &means, &m2s, &mut mean, &mut m2).unwrap();
    assert_eq!(count, n * h * w);
    let (mut gm, mut gi, mut gmm, mut gmv) = (vec![0.0; cu], vec![0.0; cu], vec![0.0; cu], vec![1.0; cu]);
    bn_finalize_stats(&opt, count, &mean, &m2, &mut gm, &mut gi, Some((&mut gmm, &mut gmv))).unwrap();
    let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    assert_close("mean", &gm, &f64s(&sm), 1e-6);
    assert_close("invstd", &gi, &f64s(&si), 1e-6);
    assert_close("moving mean", &gmm, &f64s(&mm), 1e-6);
    assert_close("moving var", &gmv, &f64s(&mv), 1e-6);
    let (mut sy, mut s1, mut s2) = (vec![0.0; x.len()], vec![0.0; cu], vec![0.0; cu]);
    for (p, &np) in parts.iter().enumerate() {
        let l = Layout::nchw(np, c, h, w);
        let r = off[p]..off[p + 1];
        bn_apply(&l, &x[r.clone()], &mut sy[r.clone()], Some(&gamma), Some(&beta), &gm, &gi).unwrap();
        let (mut a, mut b) = (vec![0.0; cu], vec![0.0; cu]);
        bn_backward_reduce(&l, &x[r.clone()], &dy[r], &gm, &gi, &mut a, &mut b).unwrap();
        for k in 0..cu {
            s1[k] += a[k];
            s2[k] += b[k];
        }
    }
    assert_close("y", &sy, &f64s(&y), 1e-5);
    let mut sdx = vec![0.0; x.len()];
    for (p, &np) in parts.iter().enumerate() {
        let l = Layout::nchw(np, c, h, w);
        let r = off[p]..off[p + 1];
        bn_backward_apply(&l, count, &x[r.clone()], &dy[r.clone()], Some(&gamma), &gm, &gi, &s1, &s2, &mut sdx[r]).unwrap();
    }
    assert_close("dx", &sdx, &f64s(&dx), 1e-5);
    let s1f: Vec<f32> = s1.iter().map(|&v| v as f32).collect();
    let s2f: Vec<f32> = s2.iter().map(|&v| v as f32).collect();
    assert_close("dbeta", &s1f, &f64s(&db), 1e-5);
    assert_close("dgamma", &s2f, &f64s(&dg), 1e-5);
    let _ = per;
}

// Mean 1e4, sd 0.1: with bn_merge_stats' f64 mean (the *_mean64 forms) the
// split path is as exact as the whole batch; an f32 mean (ulp 1e-3) is not.
#[test]
fn split_statistics_with_the_f64_mean_on_offset_data() {
    let parts = [2i64, 3, 6];
    let (n, c, h, w) = (11, 5, 3, 7);
    let cu = c as usize;
    for nhwc in [false, true] {
        let layout = |n| if nhwc { Layout::nhwc(n, h, w, c) } else { Layout::nchw(n, c, h, w) };
        let whole = layout(n);
        let x = normal(whole.len(), 22, 1e4, 0.1);
        let dy = normal(whole.len(), 23, 0.0, 1.0);
        let gamma = normal(cu, 24, 1.0, 0.5);
        let beta = normal(cu, 25, 0.0, 0.5);
        let opt = BnOptions::default();
        let (mut y, mut sm, mut si) = (vec![0.0; x.len()], vec![0.0; cu], vec![0.0; cu]);
        bn_forward_training(&whole, &opt, &x, &mut y, Some(&gamma), Some(&beta), Some(Saved { mean: &mut sm, invstd: &mut si }), None).unwrap();
        let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; cu], vec![0.0; cu]);
        bn_backward(&whole, &opt, &x, &dy, Some(&gamma), &sm, &si, &mut dx, Some((&mut dg, &mut db))).unwrap();

        let mut counts = vec![];
        let (mut means, mut m2s) = (vec![0.0; parts.len() * cu], vec![0.0; parts.len() * cu]);
        let mut off = vec![0usize];
        for (p, &np) in parts.iter().enumerate() {
            let (a, b) = (off[p], off[p] + layout(np).len());
            counts.push(bn_partial_stats(&layout(np), &x[a..b], &mut means[p * cu..(p + 1) * cu], &mut m2s[p * cu..(p + 1) * cu]).unwrap());
            off.push(b);
        }
        let (mut mean, mut m2) = (vec![0.0; cu], vec![0.0; cu]);
        let count = bn_merge_stats(&counts, &means, &m2s, &mut mean, &mut m2).unwrap();
        let (mut gm, mut gi) = (vec![0.0; cu], vec![0.0; cu]);
        bn_finalize_stats(&opt, count, &mean, &m2, &mut gm, &mut gi, None).unwrap();
        let (mut sy, mut fy, mut s1, mut s2) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; cu], vec![0.0; cu]);
        for (p, &np) in parts.iter().enumerate() {
            let r = off[p]..off[p + 1];
            bn_apply_mean64(&layout(np), &x[r.clone()], &mut sy[r.clone()], Some(&gamma), Some(&beta), &mean, &gi).unwrap();
            bn_apply(&layout(np), &x[r.clone()], &mut fy[r.clone()], Some(&gamma), Some(&beta), &gm, &gi).unwrap();
            let (mut a, mut b) = (vec![0.0; cu], vec![0.0; cu]);
            bn_backward_reduce_mean64(&layout(np), &x[r.clone()], &dy[r], &mean, &gi, &mut a, &mut b).unwrap();
            for k in 0..cu {
                s1[k] += a[k];
                s2[k] += b[k];
            }
        }
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        assert_close("y", &sy, &f64s(&y), 5e-5);
        assert!(rel_err(&fy, &f64s(&y)) > 5e-5, "the f32 mean should miss on this data");
        let mut sdx = vec![0.0; x.len()];
        for (p, &np) in parts.iter().enumerate() {
            let r = off[p]..off[p + 1];
            bn_backward_apply_mean64(&layout(np), count, &x[r.clone()], &dy[r.clone()], Some(&gamma), &mean, &gi, &s1, &s2, &mut sdx[r]).unwrap();
        }
        assert_close("dx", &sdx, &f64s(&dx), 5e-5);
        let s1f: Vec<f32> = s1.iter().map(|&v| v as f32).collect();
        let s2f: Vec<f32> = s2.iter().map(|&v| v as f32).collect();
        assert_close("dbeta", &s1f, &f64s(&db), 5e-5);
        assert_close("dgamma", &s2f, &f64s(&dg), 5e-5);
    }
}

#[test]
fn errors_carry_status_and_message() {
    let layout = Layout::nc(2, 3);
    let x = vec![0.0f32; 6];
    let mut y = vec![0.0f32; 6];
    let e = bn_forward_training(&layout, &BnOptions::default().epsilon(0.0), &x, &mut y, None, None, None, None).unwrap_err();
    assert_eq!(e.status, normkit_sys::NK_ERR_BAD_ARGUMENT);
    assert!(e.message.contains("epsilon"), "{}", e.message);
    assert!(e.to_string().contains("epsilon"));
    // Slice lengths are checked before C is called.
    let e = bn_forward_training(&layout, &BnOptions::default(), &x[..5], &mut y, None, None, None, None).unwrap_err();
    assert_eq!(e.status, normkit_sys::NK_ERR_BAD_SHAPE);
    let e = bn_forward_training(&layout, &BnOptions::default(), &x, &mut y, Some(&[1.0; 4]), None, None, None).unwrap_err();
    assert_eq!(e.status, normkit_sys::NK_ERR_BAD_SHAPE);
    assert_eq!(Layout::new(&[2, 3], &[2]).unwrap_err().status, normkit_sys::NK_ERR_BAD_AXIS);
    assert_eq!(Layout::new(&[2, 0], &[1]).unwrap_err().status, normkit_sys::NK_ERR_BAD_SHAPE);
    assert_eq!(Layout::new(&[1i64 << 40, 1 << 40], &[1]).unwrap_err().status, normkit_sys::NK_ERR_OVERFLOW);
    let e = set_max_isa(Some("pentium")).unwrap_err();
    assert_eq!(e.status, normkit_sys::NK_ERR_BAD_ISA);
    assert!(!e.message.is_empty());
}

#[test]
fn settings_versions_and_isas_agree() {
    check_version().unwrap();
    let (a, b, c) = version();
    assert_eq!(version_string(), format!("{a}.{b}.{c}"));
    let layout = Layout::nchw(3, 37, 2, 3);
    let x = normal(layout.len(), 20, 0.0, 1.0);
    let mut results = vec![];
    for isa in ["avx512", "avx2", "sse2", "neon", "scalar"] {
        if isa_available(isa) {
            set_max_isa(Some(isa)).unwrap();
            assert_eq!(active_isa(), isa);
            let mut y = vec![0.0; x.len()];
            bn_forward_training(&layout, &BnOptions::default(), &x, &mut y, None, None, None, None).unwrap();
            results.push(y);
        }
    }
    set_max_isa(None).unwrap();
    assert!(!results.is_empty());
    let first: Vec<f64> = results[0].iter().map(|&v| v as f64).collect();
    for r in &results {
        assert_close("ISAs", r, &first, 1e-5);
    }
    let t = stream_threshold();
    set_stream_threshold(4096).unwrap();
    assert_eq!(stream_threshold(), 4096);
    set_stream_threshold(-1).unwrap();
    assert_eq!(stream_threshold(), t);
    set_num_threads(1).unwrap();
    assert_eq!(num_threads(), 1);
    set_num_threads(0).unwrap();
}

#[test]
fn layer_starts_like_keras() {
    let layout = Layout::nhwc(4, 2, 3, 5);
    let dims = [4, 2, 3, 5];
    let mut bn = BatchNorm::new(5);
    assert!(bn.gamma.iter().all(|&v| v == 1.0) && bn.beta.iter().all(|&v| v == 0.0));
    assert!(bn.moving_mean.iter().all(|&v| v == 0.0) && bn.moving_var.iter().all(|&v| v == 1.0));
    let x = normal(layout.len(), 30, 2.0, 3.0);
    let dy = normal(layout.len(), 31, 0.0, 1.0);
    let y0 = bn.forward_inference(&layout, &x).unwrap();
    let want0: Vec<f64> = x.iter().map(|&v| v as f64 / (1.0f64 + 1e-3).sqrt()).collect();
    assert_close("inference at start", &y0, &want0, 1e-6);
    let y = bn.forward_training(&layout, &x).unwrap();
    let r = reference(&dims, 3, &x, &dy, None, None, 1e-3);
    assert_close("y", &y, &r.y, 1e-5);
    let g = bn.backward(&layout, &x, &dy).unwrap();
    assert_close("dx", &g.dx, &r.dx, 1e-4);
    assert_close("dgamma", &g.dgamma, &r.dgamma, 1e-4);
    assert_close("dbeta", &g.dbeta, &r.dbeta, 1e-5);
}

/// float64 gradient of the inference forward (moving statistics constant):
/// (dx, dgamma, dbeta) with dx = dy * gamma / sqrt(mv + eps).
#[allow(clippy::too_many_arguments)]
fn inference_grads(dims: &[i64], axis: usize, x: &[f32], dy: &[f32], gamma: &[f32], mm: &[f32], mv: &[f32], eps: f32) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let c = dims[axis] as usize;
    let f = feature_of(dims, axis);
    let inv: Vec<f64> = mv.iter().map(|&v| 1.0 / (v as f64 + eps as f64).sqrt()).collect();
    let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
    let mut dx = vec![0.0; x.len()];
    for i in 0..x.len() {
        let k = f[i];
        dx[i] = dy[i] as f64 * gamma[k] as f64 * inv[k];
        db[k] += dy[i] as f64;
        dg[k] += dy[i] as f64 * (x[i] as f64 - mm[k] as f64) * inv[k];
    }
    (dx, dg, db)
}

/// A layer with gamma, beta and moving statistics away from their defaults.
fn layer_with_stats(c: usize, seed: u64) -> BatchNorm {
    let mut bn = BatchNorm::new(c);
    bn.gamma = normal(c, seed, 1.0, 0.3);
    bn.beta = normal(c, seed + 1, 0.0, 1.0);
    bn.moving_mean = normal(c, seed + 2, 0.5, 1.0);
    bn.moving_var = normal(c, seed + 3, 0.0, 1.0).iter().map(|v| 0.3 + v.abs()).collect();
    bn
}

// TF2: trainable = false runs in inference mode even through forward_training,
// leaves the moving statistics alone, and passes dx = dy * gamma / sqrt(mv + eps)
// back, with no dgamma, dbeta (empty vectors).
#[test]
fn frozen_layer_runs_in_inference_mode() {
    assert!(BatchNorm::new(3).trainable);
    for (layout, dims, axis) in [(Layout::nchw(3, 4, 2, 5), vec![3i64, 4, 2, 5], 1usize), (Layout::nhwc(2, 3, 5, 4), vec![2, 3, 5, 4], 3)] {
        let mut bn = layer_with_stats(4, 50);
        bn.trainable = false;
        let (mm, mv) = (bn.moving_mean.clone(), bn.moving_var.clone());
        let x = normal(layout.len(), 54, 1.0, 2.0);
        let dy = normal(layout.len(), 55, 0.0, 1.0);
        let y = bn.forward_training(&layout, &x).unwrap();
        assert_eq!(bn.moving_mean, mm);
        assert_eq!(bn.moving_var, mv);
        assert_eq!(y, bn.forward_inference(&layout, &x).unwrap());
        let f = feature_of(&dims, axis);
        let want_y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let k = f[i];
                bn.gamma[k] as f64 * (v as f64 - mm[k] as f64) / (mv[k] as f64 + 1e-3f32 as f64).sqrt() + bn.beta[k] as f64
            })
            .collect();
        assert_close("frozen y", &y, &want_y, 1e-5);
        bn.forward_training(&layout, &x).unwrap();
        let g = bn.backward(&layout, &x, &dy).unwrap();
        let (wdx, _, _) = inference_grads(&dims, axis, &x, &dy, &bn.gamma, &mm, &mv, 1e-3);
        assert_close("frozen dx", &g.dx, &wdx, 1e-6);
        assert!(g.dgamma.is_empty() && g.dbeta.is_empty());
    }
}

#[test]
fn backward_follows_the_mode_of_the_last_forward() {
    let layout = Layout::nchw(3, 4, 7, 1);
    let dims = [3i64, 4, 7, 1];
    let x = normal(layout.len(), 60, -0.5, 1.5);
    let dy = normal(layout.len(), 61, 0.0, 1.0);
    let mut bn = layer_with_stats(4, 62);
    // No forward yet: the inference-mode gradient.
    let g = bn.backward(&layout, &x, &dy).unwrap();
    let (wdx, wdg, wdb) = inference_grads(&dims, 1, &x, &dy, &bn.gamma, &bn.moving_mean, &bn.moving_var, 1e-3);
    assert_close("dx before any forward", &g.dx, &wdx, 1e-6);
    assert_close("dgamma before any forward", &g.dgamma, &wdg, 1e-5);
    // Training, then inference: the inference-mode gradient with dgamma, dbeta.
    bn.forward_training(&layout, &x).unwrap();
    bn.forward_inference(&layout, &x).unwrap();
    let g = bn.backward(&layout, &x, &dy).unwrap();
    let (wdx, wdg, wdb2) = inference_grads(&dims, 1, &x, &dy, &bn.gamma, &bn.moving_mean, &bn.moving_var, 1e-3);
    assert_close("inference dx", &g.dx, &wdx, 1e-6);
    assert_close("inference dgamma", &g.dgamma, &wdg, 1e-5);
    assert_close("inference dbeta", &g.dbeta, &wdb2, 1e-5);
    assert_close("dbeta = sum(dy) either way", &g.dbeta, &wdb, 1e-5);
    // Training again: the training gradient.
    bn.forward_training(&layout, &x).unwrap();
    let g = bn.backward(&layout, &x, &dy).unwrap();
    let r = reference(&dims, 1, &x, &dy, Some(&bn.gamma), None, 1e-3);
    assert_close("training dx", &g.dx, &r.dx, 1e-4);
    assert_close("training dgamma", &g.dgamma, &r.dgamma, 1e-4);
    assert_close("training dbeta", &g.dbeta, &r.dbeta, 1e-5);
    // Frozen after that training forward: its gradient, without dgamma, dbeta.
    bn.trainable = false;
    let g = bn.backward(&layout, &x, &dy).unwrap();
    assert_close("training dx, frozen", &g.dx, &r.dx, 1e-4);
    assert!(g.dgamma.is_empty() && g.dbeta.is_empty());
}

#[test]
fn ex_without_extras_equals_forward_training() {
    let layout = Layout::nchw(4, 3, 2, 5);
    let dims = [4, 3, 2, 5];
    let x = normal(layout.len(), 40, 0.0, 2.0);
    let dy = normal(layout.len(), 41, 0.0, 1.0);
    let (mut mm, mut mv, mut sm, mut si) = (vec![0.0; 3], vec![1.0; 3], vec![0.0; 3], vec![0.0; 3]);
    let mut y = vec![0.0; x.len()];
    let opt = BnOptions::default();
    let mut st = BnState { moving_mean: Some(&mut mm), moving_var: Some(&mut mv), saved_mean: Some(&mut sm), saved_invstd: Some(&mut si), ..Default::default() };
    bn_forward_training_ex(&layout, &opt, &x, &mut y, None, None, &mut st).unwrap();
    let r = reference(&dims, 1, &x, &dy, None, None, 1e-3);
    assert_close("y", &y, &r.y, 1e-5);
    let mut dx = vec![0.0; x.len()];
    bn_backward_ex(&layout, &opt, &x, &dy, None, &mut st, &mut dx, None).unwrap();
    assert_close("dx", &dx, &r.dx, 1e-4);
}

// The options' struct_size is public, but each call passes the crate's own:
// a safe caller cannot make the library read past the struct.
#[test]
fn options_struct_size_is_set_by_the_crate() {
    let mut opt = BnOptions::default();
    opt.0.struct_size = 1 << 20;
    let (mut gm, mut gi) = (vec![0.0f32; 2], vec![0.0f32; 2]);
    bn_finalize_stats(&opt, 10, &[0.0, 1.0], &[1.0, 2.0], &mut gm, &mut gi, None).unwrap();
    assert_eq!(gm, vec![0.0, 1.0]);
    let mut ln = LnOptions::default();
    ln.0.struct_size = 1 << 20;
    let layout = Layout::new(&[2, 3], &[-1]).unwrap();
    let x = [1.0f32, 2.0, 3.0, -1.0, 0.0, 1.0];
    let mut y = vec![0.0f32; 6];
    layer_norm_forward(&layout, &ln, &x, &mut y, None, None, None).unwrap();
    assert!((y[0] + y[2]).abs() < 1e-6 && y[0] < 0.0);
}
