//! Group/Layer/Instance/RMS Norm, Batch Norm _ex (ghost batches, renorm) and
//! the activations against float64 references written here.
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

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let e = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs() / w.abs().max(1.0)).fold(0.0, |a: f64, e| if e.is_nan() { f64::INFINITY } else { a.max(e) });
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

/// Normalization over statistic groups: element i belongs to group grp[i] and
/// parameter index par[i]. y = gamma * xhat + beta; dx, dgamma, dbeta.
struct Ref {
    y: Vec<f64>,
    mean: Vec<f64>,
    invstd: Vec<f64>,
    xhat: Vec<f64>,
    dx: Vec<f64>,
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
fn grouped(x: &[f32], dy: &[f32], grp: &[usize], ngrp: usize, par: &[usize], npar: usize, gamma: &[f32], beta: &[f32], eps: f64) -> Ref {
    let mut cnt = vec![0.0f64; ngrp];
    let mut mean = vec![0.0f64; ngrp];
    for i in 0..x.len() {
        cnt[grp[i]] += 1.0;
        mean[grp[i]] += x[i] as f64;
    }
    for g in 0..ngrp {
        mean[g] /= cnt[g];
    }
    let mut var = vec![0.0f64; ngrp];
    for i in 0..x.len() {
        var[grp[i]] += (x[i] as f64 - mean[grp[i]]).powi(2);
    }
    let invstd: Vec<f64> = (0..ngrp).map(|g| 1.0 / (var[g] / cnt[g] + eps).sqrt()).collect();
    let xhat: Vec<f64> = (0..x.len()).map(|i| (x[i] as f64 - mean[grp[i]]) * invstd[grp[i]]).collect();
    let y = (0..x.len()).map(|i| gamma[par[i]] as f64 * xhat[i] + beta[par[i]] as f64).collect();
    let (mut s1, mut s2) = (vec![0.0; ngrp], vec![0.0; ngrp]);
    let (mut dg, mut db) = (vec![0.0; npar], vec![0.0; npar]);
    for i in 0..x.len() {
        let gdy = gamma[par[i]] as f64 * dy[i] as f64;
        s1[grp[i]] += gdy;
        s2[grp[i]] += gdy * xhat[i];
        dg[par[i]] += dy[i] as f64 * xhat[i];
        db[par[i]] += dy[i] as f64;
    }
    let dx = (0..x.len())
        .map(|i| {
            let g = grp[i];
            let gdy = gamma[par[i]] as f64 * dy[i] as f64;
            invstd[g] * (gdy - s1[g] / cnt[g] - xhat[i] * s2[g] / cnt[g])
        })
        .collect();
    Ref { y, mean, invstd, xhat, dx, dgamma: dg, dbeta: db }
}

#[test]
fn group_norm_nchw_and_nhwc_vs_float64() {
    let (n, c, h, w, groups) = (3usize, 8usize, 4usize, 5usize, 4usize);
    for nhwc in [false, true] {
        let layout = if nhwc { Layout::nhwc(n as i64, h as i64, w as i64, c as i64) } else { Layout::nchw(n as i64, c as i64, h as i64, w as i64) };
        let len = layout.len();
        let x = normal(len, 1, 2.0, 3.0);
        let dy = normal(len, 2, 0.0, 1.0);
        let gamma = normal(c, 3, 1.0, 0.5);
        let beta = normal(c, 4, 0.0, 0.5);
        let chan = |i: usize| if nhwc { i % c } else { (i / (h * w)) % c };
        let par: Vec<usize> = (0..len).map(chan).collect();
        let grp: Vec<usize> = (0..len).map(|i| (i / (c * h * w)) * groups + chan(i) / (c / groups)).collect();
        let r = grouped(&x, &dy, &grp, n * groups, &par, c, &gamma, &beta, 1e-5);
        let opt = GnOptions::default().groups(groups as i32);
        let (mut y, mut sm, mut si) = (vec![0.0; len], vec![0.0; n * groups], vec![0.0; n * groups]);
        group_norm_forward(&layout, &opt, &x, &mut y, Some(&gamma), Some(&beta), Some(Saved { mean: &mut sm, invstd: &mut si })).unwrap();
        assert_close("gn y", &y, &r.y, 1e-5);
        assert_close("gn mean", &sm, &r.mean, 1e-5);
        assert_close("gn invstd", &si, &r.invstd, 1e-5);
        let (mut dx, mut dg, mut db) = (vec![0.0; len], vec![0.0; c], vec![0.0; c]);
        group_norm_backward(&layout, &opt, &x, &dy, Some(&gamma), &sm, &si, &mut dx, Some((&mut dg, &mut db))).unwrap();
        assert_close("gn dx", &dx, &r.dx, 1e-4);
        assert_close("gn dgamma", &dg, &r.dgamma, 1e-4);
        assert_close("gn dbeta", &db, &r.dbeta, 1e-4);
    }
}

#[test]
fn group_norm_errors() {
    let layout = Layout::nchw(2, 6, 2, 2);
    let x = vec![0.0; layout.len()];
    let mut y = vec![0.0; layout.len()];
    let e = group_norm_forward(&layout, &GnOptions::default().groups(4), &x, &mut y, None, None, None).unwrap_err();
    assert_eq!(e.status, 4);
    assert!(!e.message.is_empty());
    let e = group_norm_forward(&layout, &GnOptions::default().groups(3), &x, &mut y[1..], None, None, None).unwrap_err();
    assert_eq!(e.status, 2);
}

#[test]
fn layer_norm_and_instance_norm_vs_float64() {
    let (r_, d) = (12usize, 20usize);
    let layout = Layout::new(&[3, 4, d as i64], &[-1]).unwrap();
    let x = normal(r_ * d, 5, -1.0, 2.0);
    let dy = normal(r_ * d, 6, 0.0, 1.0);
    let gamma = normal(d, 7, 1.0, 0.3);
    let beta = normal(d, 8, 0.0, 0.3);
    let grp: Vec<usize> = (0..r_ * d).map(|i| i / d).collect();
    let par: Vec<usize> = (0..r_ * d).map(|i| i % d).collect();
    let r = grouped(&x, &dy, &grp, r_, &par, d, &gamma, &beta, 1e-5);
    let opt = LnOptions::default();
    let (mut y, mut sm, mut si) = (vec![0.0; x.len()], vec![0.0; r_], vec![0.0; r_]);
    layer_norm_forward(&layout, &opt, &x, &mut y, Some(&gamma), Some(&beta), Some(Saved { mean: &mut sm, invstd: &mut si })).unwrap();
    assert_close("ln y", &y, &r.y, 1e-5);
    let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; d], vec![0.0; d]);
    layer_norm_backward(&layout, &opt, &x, &dy, Some(&gamma), &sm, &si, &mut dx, Some((&mut dg, &mut db))).unwrap();
    assert_close("ln dx", &dx, &r.dx, 1e-4);
    assert_close("ln dgamma", &dg, &r.dgamma, 1e-4);
    assert_close("ln dbeta", &db, &r.dbeta, 1e-4);

    // Instance Norm: NCHW, groups (n, c)
    let (n, c, hw) = (3usize, 4usize, 10usize);
    let layout = Layout::new(&[n as i64, c as i64, hw as i64], &[1]).unwrap();
    let x = normal(n * c * hw, 9, 1.0, 2.0);
    let dy = normal(n * c * hw, 10, 0.0, 1.0);
    let gamma = normal(c, 11, 1.0, 0.3);
    let beta = normal(c, 12, 0.0, 0.3);
    let grp: Vec<usize> = (0..x.len()).map(|i| i / hw).collect();
    let par: Vec<usize> = (0..x.len()).map(|i| (i / hw) % c).collect();
    let r = grouped(&x, &dy, &grp, n * c, &par, c, &gamma, &beta, 1e-5);
    let opt = InOptions::default();
    let (mut y, mut sm, mut si) = (vec![0.0; x.len()], vec![0.0; n * c], vec![0.0; n * c]);
    let (mut mm, mut mv) = (vec![0.0; c], vec![1.0; c]);
    instance_norm_forward_training(&layout, &opt, &x, &mut y, Some(&gamma), Some(&beta), Some(Saved { mean: &mut sm, invstd: &mut si }), Some((&mut mm, &mut mv))).unwrap();
    assert_close("in y", &y, &r.y, 1e-5);
    // moving (torch): 0.9 * old + 0.1 * mean over n of instance stats (unbiased var)
    let want_mm: Vec<f64> = (0..c).map(|k| 0.1 * (0..n).map(|s| r.mean[s * c + k]).sum::<f64>() / n as f64).collect();
    let want_mv: Vec<f64> = (0..c)
        .map(|k| {
            let v: f64 = (0..n).map(|s| (1.0 / r.invstd[s * c + k].powi(2) - 1e-5) * hw as f64 / (hw - 1) as f64).sum::<f64>() / n as f64;
            0.9 + 0.1 * v
        })
        .collect();
    assert_close("in moving mean", &mm, &want_mm, 1e-5);
    assert_close("in moving var", &mv, &want_mv, 1e-4);
    let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    instance_norm_backward(&layout, &opt, &x, &dy, Some(&gamma), &sm, &si, &mut dx, Some((&mut dg, &mut db))).unwrap();
    assert_close("in dx", &dx, &r.dx, 1e-4);
    assert_close("in dgamma", &dg, &r.dgamma, 1e-4);
    assert_close("in dbeta", &db, &r.dbeta, 1e-4);
    let mut yi = vec![0.0; x.len()];
    instance_norm_forward_inference(&layout, &opt, &x, &mut yi, Some(&gamma), Some(&beta), &mm, &mv).unwrap();
    let want: Vec<f64> = (0..x.len()).map(|i| {
        let k = par[i];
        gamma[k] as f64 * (x[i] as f64 - mm[k] as f64) / (mv[k] as f64 + 1e-5).sqrt() + beta[k] as f64
    }).collect();
    assert_close("in inference", &yi, &want, 1e-5);
}

#[test]
fn rms_norm_vs_float64() {
    let (r_, d) = (7usize, 33usize);
    let layout = Layout::new(&[r_ as i64, d as i64], &[-1]).unwrap();
    let x = normal(r_ * d, 13, 0.5, 2.0);
    let dy = normal(r_ * d, 14, 0.0, 1.0);
    let gamma = normal(d, 15, 1.0, 0.3);
    let eps = 1e-5;
    let mut rstd = vec![0.0f64; r_];
    let mut want_y = vec![0.0f64; x.len()];
    let mut want_dx = vec![0.0f64; x.len()];
    let mut want_dg = vec![0.0f64; d];
    for r in 0..r_ {
        let row = &x[r * d..(r + 1) * d];
        let ms: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
        rstd[r] = 1.0 / (ms + eps).sqrt();
        let mut s = 0.0;
        for j in 0..d {
            let i = r * d + j;
            want_y[i] = x[i] as f64 * rstd[r] * gamma[j] as f64;
            want_dg[j] += dy[i] as f64 * x[i] as f64 * rstd[r];
            s += gamma[j] as f64 * dy[i] as f64 * x[i] as f64;
        }
        for j in 0..d {
            let i = r * d + j;
            want_dx[i] = rstd[r] * (gamma[j] as f64 * dy[i] as f64 - x[i] as f64 * rstd[r] * rstd[r] * s / d as f64);
        }
    }
    let opt = LnOptions::default();
    let (mut y, mut rs) = (vec![0.0; x.len()], vec![0.0; r_]);
    rms_norm_forward(&layout, &opt, &x, &mut y, Some(&gamma), Some(&mut rs)).unwrap();
    assert_close("rms y", &y, &want_y, 1e-5);
    assert_close("rms rstd", &rs, &rstd, 1e-5);
    let (mut dx, mut dg) = (vec![0.0; x.len()], vec![0.0; d]);
    rms_norm_backward(&layout, &opt, &x, &dy, Some(&gamma), &rs, &mut dx, Some(&mut dg)).unwrap();
    assert_close("rms dx", &dx, &want_dx, 1e-4);
    assert_close("rms dgamma", &dg, &want_dg, 1e-4);
}

#[test]
fn selu_elu_leaky_relu_relu_vs_float64() {
    let x = normal(1000, 16, 0.0, 3.0);
    let dy = normal(1000, 17, 0.0, 1.0);
    let (a, l) = (selu_alpha(), selu_lambda());
    assert!((a - 1.6732632423543772).abs() < 1e-15 && (l - 1.0507009873554805).abs() < 1e-15);
    let mut y = vec![0.0; x.len()];
    let mut dx = vec![0.0; x.len()];
    let xs: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let dys: Vec<f64> = dy.iter().map(|&v| v as f64).collect();
    selu_forward(&x, &mut y).unwrap();
    assert_close("selu y", &y, &xs.iter().map(|&v| l * if v < 0.0 { a * v.exp_m1() } else { v }).collect::<Vec<_>>(), 1e-6);
    selu_backward(&x, &dy, &mut dx).unwrap();
    assert_close("selu dx", &dx, &xs.iter().zip(&dys).map(|(&v, &g)| l * g * if v < 0.0 { a * v.exp() } else { 1.0 }).collect::<Vec<_>>(), 1e-6);
    let al = 0.7f32;
    elu_forward(al, &x, &mut y).unwrap();
    assert_close("elu y", &y, &xs.iter().map(|&v| if v < 0.0 { al as f64 * v.exp_m1() } else { v }).collect::<Vec<_>>(), 1e-6);
    elu_backward(al, &x, &dy, &mut dx).unwrap();
    assert_close("elu dx", &dx, &xs.iter().zip(&dys).map(|(&v, &g)| if v < 0.0 { al as f64 * v.exp() * g } else { g }).collect::<Vec<_>>(), 1e-6);
    leaky_relu_forward(0.1, &x, &mut y).unwrap();
    assert_close("leaky y", &y, &xs.iter().map(|&v| if v < 0.0 { 0.1f32 as f64 * v } else { v }).collect::<Vec<_>>(), 1e-6);
    leaky_relu_backward(0.1, &x, &dy, &mut dx).unwrap();
    assert_close("leaky dx", &dx, &xs.iter().zip(&dys).map(|(&v, &g)| if v < 0.0 { 0.1f32 as f64 * g } else { g }).collect::<Vec<_>>(), 1e-6);
    relu_forward(&x, &mut y).unwrap();
    assert_close("relu y", &y, &xs.iter().map(|&v| v.max(0.0)).collect::<Vec<_>>(), 0.0);
    relu_backward(&x, &dy, &mut dx).unwrap();
    assert_close("relu dx", &dx, &xs.iter().zip(&dys).map(|(&v, &g)| if v > 0.0 { g } else { 0.0 }).collect::<Vec<_>>(), 0.0);
    assert_eq!(relu_forward(&x, &mut y[1..]).unwrap_err().status, 2);
}

#[test]
fn prelu_crelu_dropout_lecun() {
    let layout = Layout::nchw(2, 3, 2, 2);
    let x = normal(layout.len(), 18, 0.0, 1.0);
    let dy = normal(layout.len(), 19, 0.0, 1.0);
    let slope = [0.1f32, 0.2, 0.3];
    let mut y = vec![0.0; x.len()];
    prelu_forward(&layout, &x, &mut y, &slope).unwrap();
    let c = |i: usize| (i / 4) % 3;
    assert_close("prelu y", &y, &(0..x.len()).map(|i| if x[i] < 0.0 { slope[c(i)] as f64 * x[i] as f64 } else { x[i] as f64 }).collect::<Vec<_>>(), 1e-7);
    let (mut dx, mut ds) = (vec![0.0; x.len()], vec![0.0; 3]);
    prelu_backward(&layout, &x, &dy, &slope, &mut dx, Some(&mut ds)).unwrap();
    let mut want_ds = vec![0.0f64; 3];
    for i in 0..x.len() {
        if x[i] < 0.0 {
            want_ds[c(i)] += x[i] as f64 * dy[i] as f64;
        }
    }
    assert_close("prelu dslope", &ds, &want_ds, 1e-6);
    let mut yc = vec![0.0; 2 * x.len()];
    crelu_forward(&layout, &x, &mut yc).unwrap();
    assert_eq!(yc[..4].iter().zip(&x[..4]).filter(|(a, b)| **a != b.max(0.0)).count(), 0);
    let mut dxc = vec![0.0; x.len()];
    crelu_backward(&layout, &x, &yc, &mut dxc).unwrap();
    assert_close("crelu dx", &dxc, &x.iter().map(|&v| v as f64).collect::<Vec<_>>(), 1e-7);

    // AlphaDropout keeps mean 0 / variance 1 of SELU'd normal data
    let z0 = normal(1 << 18, 20, 0.0, 1.0);
    let mut z = vec![0.0; z0.len()];
    selu_forward(&z0, &mut z).unwrap();
    let mut d = vec![0.0; z.len()];
    alpha_dropout_forward(0.1, 7, 0, &z, &mut d).unwrap();
    let m = d.iter().map(|&v| v as f64).sum::<f64>() / d.len() as f64;
    let v = d.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / d.len() as f64;
    assert!(m.abs() < 0.02 && (v - 1.0).abs() < 0.03, "alpha dropout mean {m} var {v}");
    let mut g = vec![0.0; z.len()];
    alpha_dropout_backward(0.1, 7, 0, &vec![1.0; z.len()], &mut g).unwrap();
    let kept = g.iter().filter(|&&v| v != 0.0).count() as f64 / g.len() as f64;
    assert!((kept - 0.9).abs() < 0.005, "kept {kept}");

    let mut w = vec![0.0; 200_000];
    lecun_normal_init(25, false, 3, 0, &mut w).unwrap();
    let v = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / w.len() as f64;
    assert!((v * 25.0 - 1.0).abs() < 0.02, "lecun var {v}");
    lecun_normal_init(25, true, 3, 0, &mut w).unwrap();
    let v = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / w.len() as f64;
    assert!((v * 25.0 - 1.0).abs() < 0.02, "truncated lecun var {v}");
}

#[test]
fn bn_ex_ghost_batches_contiguous_vs_float64() {
    let (n, c, hw, vb) = (6usize, 3usize, 4usize, 2usize);
    let gcount = n / vb;
    let layout = Layout::new(&[n as i64, c as i64, hw as i64], &[1]).unwrap();
    let x = normal(layout.len(), 21, 1.0, 2.0);
    let dy = normal(layout.len(), 22, 0.0, 1.0);
    let gamma = normal(c, 23, 1.0, 0.3);
    let beta = normal(c, 24, 0.0, 0.3);
    let par: Vec<usize> = (0..x.len()).map(|i| (i / hw) % c).collect();
    let grp: Vec<usize> = (0..x.len()).map(|i| (i / (c * hw)) / vb * c + par[i]).collect();
    let r = grouped(&x, &dy, &grp, gcount * c, &par, c, &gamma, &beta, 1e-3);
    let opt = BnOptions::default().virtual_batch(vb as i32, Grouping::Contiguous);
    let (mut mm, mut mv) = (vec![0.0; c], vec![1.0; c]);
    let (mut sm, mut si) = (vec![0.0; gcount * c], vec![0.0; gcount * c]);
    let mut y = vec![0.0; x.len()];
    let mut st = BnState { moving_mean: Some(&mut mm), moving_var: Some(&mut mv), saved_mean: Some(&mut sm), saved_invstd: Some(&mut si), ..Default::default() };
    bn_forward_training_ex(&layout, &opt, &x, &mut y, Some(&gamma), Some(&beta), &mut st).unwrap();
    assert_close("ghost y", &y, &r.y, 1e-5);
    let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    bn_backward_ex(&layout, &opt, &x, &dy, Some(&gamma), &mut st, &mut dx, Some((&mut dg, &mut db))).unwrap();
    assert_close("ghost dx", &dx, &r.dx, 1e-4);
    assert_close("ghost dgamma", &dg, &r.dgamma, 1e-4);
    assert_close("ghost dbeta", &db, &r.dbeta, 1e-4);
    assert_close("ghost saved mean", &sm, &r.mean, 1e-5);
    // one moving update (TF, momentum 0.99) from the mean over virtual batches
    let want_mm: Vec<f64> = (0..c).map(|k| 0.01 * (0..gcount).map(|g| r.mean[g * c + k]).sum::<f64>() / gcount as f64).collect();
    let want_mv: Vec<f64> = (0..c).map(|k| 0.99 + 0.01 * (0..gcount).map(|g| 1.0 / r.invstd[g * c + k].powi(2) - 1e-3).sum::<f64>() / gcount as f64).collect();
    assert_close("ghost moving mean", &mm, &want_mm, 1e-5);
    assert_close("ghost moving var", &mv, &want_mv, 1e-5);
}

#[test]
fn bn_ex_renorm_vs_float64() {
    let (n, c, hw) = (8usize, 3usize, 5usize);
    let layout = Layout::new(&[n as i64, c as i64, hw as i64], &[1]).unwrap();
    let x = normal(layout.len(), 25, 1.0, 2.0);
    let dy = normal(layout.len(), 26, 0.0, 1.0);
    let gamma = normal(c, 27, 1.0, 0.3);
    let beta = normal(c, 28, 0.0, 0.3);
    let eps = 1e-3f64;
    let (rmax, dmax) = (1.5f32, 0.5f32);
    let par: Vec<usize> = (0..x.len()).map(|i| (i / hw) % c).collect();
    let ones = vec![1.0f32; c];
    let zeros = vec![0.0f32; c];
    let r = grouped(&x, &dy, &par, c, &par, c, &ones, &zeros, eps);
    // state before the step: renorm_mean 0, renorm_stddev 1 -> s = 1
    let rr: Vec<f64> = (0..c).map(|k| (1.0 / r.invstd[k]).clamp(0.0, rmax as f64)).collect();
    let dd: Vec<f64> = (0..c).map(|k| r.mean[k].clamp(-(dmax as f64), dmax as f64)).collect();
    let want_y: Vec<f64> = (0..x.len()).map(|i| { let k = par[i]; gamma[k] as f64 * (r.xhat[i] * rr[k] + dd[k]) + beta[k] as f64 }).collect();
    let opt = BnOptions::default().renorm(0.9, Some(rmax), None, Some(dmax));
    let (mut mm, mut mv, mut rm, mut rs) = (vec![0.0; c], vec![1.0; c], vec![0.0; c], vec![1.0; c]);
    let (mut sm, mut si, mut sr, mut sd) = (vec![0.0; c], vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    let mut y = vec![0.0; x.len()];
    let mut st = BnState {
        moving_mean: Some(&mut mm), moving_var: Some(&mut mv), renorm_mean: Some(&mut rm), renorm_stddev: Some(&mut rs),
        saved_mean: Some(&mut sm), saved_invstd: Some(&mut si), saved_r: Some(&mut sr), saved_d: Some(&mut sd), ..Default::default()
    };
    bn_forward_training_ex(&layout, &opt, &x, &mut y, Some(&gamma), Some(&beta), &mut st).unwrap();
    assert_close("renorm y", &y, &want_y, 1e-5);
    let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    bn_backward_ex(&layout, &opt, &x, &dy, Some(&gamma), &mut st, &mut dx, Some((&mut dg, &mut db))).unwrap();
    drop(st);
    assert_close("renorm r", &sr, &rr, 1e-5);
    assert_close("renorm d", &sd, &dd, 1e-5);
    // r, d constants: dx = r * (BN's dx with gamma); dgamma = sum dy * (xhat r + d)
    let rg = grouped(&x, &dy, &par, c, &par, c, &gamma, &beta, eps);
    assert_close("renorm dx", &dx, &(0..x.len()).map(|i| rr[par[i]] * rg.dx[i]).collect::<Vec<_>>(), 1e-4);
    let mut want_dg = vec![0.0f64; c];
    for i in 0..x.len() {
        want_dg[par[i]] += dy[i] as f64 * (r.xhat[i] * rr[par[i]] + dd[par[i]]);
    }
    assert_close("renorm dgamma", &dg, &want_dg, 1e-4);
    assert_close("renorm dbeta", &db, &rg.dbeta, 1e-4);
    // renorm statistics move toward the batch's with renorm_momentum 0.9
    assert_close("renorm mean", &rm, &(0..c).map(|k| 0.1 * r.mean[k]).collect::<Vec<_>>(), 1e-5);
    assert_close("renorm stddev", &rs, &(0..c).map(|k| 0.9 + 0.1 / r.invstd[k]).collect::<Vec<_>>(), 1e-5);
}

#[test]
fn switch_norm_forward_vs_float64() {
    let (n, c, l) = (3usize, 4usize, 6usize);
    let layout = Layout::new(&[n as i64, c as i64, l as i64], &[1]).unwrap();
    let x = normal(layout.len(), 29, 1.0, 2.0);
    let gamma = normal(c, 30, 1.0, 0.3);
    let beta = normal(c, 31, 0.0, 0.3);
    let (mw, vw) = ([0.3f32, -0.2, 0.5], [-0.1f32, 0.4, 0.2]);
    let sm = |w: &[f32]| {
        let e: Vec<f64> = w.iter().map(|&v| (v as f64).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect::<Vec<_>>()
    };
    let (wm, wv) = (sm(&mw), sm(&vw));
    let at = |s: usize, k: usize, p: usize| x[(s * c + k) * l + p] as f64;
    let mut mi = vec![0.0f64; n * c];
    let mut vi = vec![0.0f64; n * c];
    for s in 0..n {
        for k in 0..c {
            let m = (0..l).map(|p| at(s, k, p)).sum::<f64>() / l as f64;
            mi[s * c + k] = m;
            vi[s * c + k] = (0..l).map(|p| (at(s, k, p) - m).powi(2)).sum::<f64>() / (l - 1) as f64;
        }
    }
    let t: Vec<f64> = (0..n * c).map(|i| vi[i] + mi[i] * mi[i]).collect();
    let ml: Vec<f64> = (0..n).map(|s| (0..c).map(|k| mi[s * c + k]).sum::<f64>() / c as f64).collect();
    let vl: Vec<f64> = (0..n).map(|s| (0..c).map(|k| t[s * c + k]).sum::<f64>() / c as f64 - ml[s] * ml[s]).collect();
    let mb: Vec<f64> = (0..c).map(|k| (0..n).map(|s| mi[s * c + k]).sum::<f64>() / n as f64).collect();
    let vb: Vec<f64> = (0..c).map(|k| (0..n).map(|s| t[s * c + k]).sum::<f64>() / n as f64 - mb[k] * mb[k]).collect();
    let mut want = vec![0.0f64; x.len()];
    for s in 0..n {
        for k in 0..c {
            let mean = wm[0] * mi[s * c + k] + wm[1] * ml[s] + wm[2] * mb[k];
            let var = wv[0] * vi[s * c + k] + wv[1] * vl[s] + wv[2] * vb[k];
            for p in 0..l {
                want[(s * c + k) * l + p] = gamma[k] as f64 * (at(s, k, p) - mean) / (var + 1e-5).sqrt() + beta[k] as f64;
            }
        }
    }
    let opt = SnOptions::default();
    let (mut mm, mut mv) = (vec![0.0; c], vec![1.0; c]);
    let mut y = vec![0.0; x.len()];
    switch_norm_forward_training(&layout, &opt, &x, &mut y, Some(&gamma), Some(&beta), &mw, &vw, Some((&mut mm, &mut mv))).unwrap();
    assert_close("sn y", &y, &want, 5e-5);
    assert_close("sn moving mean", &mm, &mb.iter().map(|m| 0.003 * m).collect::<Vec<_>>(), 1e-5);
    let (mut dx, mut dg, mut db, mut dmw, mut dvw) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c], vec![0.0; 3], vec![0.0; 3]);
    let dy = normal(x.len(), 32, 0.0, 1.0);
    switch_norm_backward(&layout, &opt, &x, &dy, Some(&gamma), &mw, &vw, &mut dx,
        Some(SnGrads { dgamma: &mut dg, dbeta: &mut db, dmean_weight: &mut dmw, dvar_weight: &mut dvw })).unwrap();
    let want_db: Vec<f64> = (0..c).map(|k| (0..n).flat_map(|s| (0..l).map(move |p| (s, p))).map(|(s, p)| dy[(s * c + k) * l + p] as f64).sum()).collect();
    assert_close("sn dbeta", &db, &want_db, 1e-5);
    assert!(dx.iter().chain(&dmw).chain(&dvw).all(|v| v.is_finite()));
    assert_eq!(switch_norm_forward_training(&layout, &opt, &x, &mut y, None, None, &mw[..2], &vw, None).unwrap_err().status, 2);
}
