//! Batch Norm and Group Norm fused with a residual add and an activation
//! against the unfused composition through this crate: the norm, the add,
//! the activation, and their backward (the activation's, then the norm's).
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

/// max |got - want| / max(|want|, 1) <= tol
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let e = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).abs() / (w as f64).abs().max(1.0))
        .fold(0.0, |a: f64, e| if e.is_nan() { f64::INFINITY } else { a.max(e) });
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

const ACTS: [Activation; 5] = [Activation::Identity, Activation::Relu, Activation::LeakyRelu(0.2), Activation::Elu(1.3), Activation::Selu];

/// act(z) through the element-wise ops.
fn act_forward(act: Activation, z: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; z.len()];
    match act {
        Activation::Identity => y.copy_from_slice(z),
        Activation::Relu => relu_forward(z, &mut y).unwrap(),
        Activation::LeakyRelu(s) => leaky_relu_forward(s, z, &mut y).unwrap(),
        Activation::Elu(a) => elu_forward(a, z, &mut y).unwrap(),
        Activation::Selu => selu_forward(z, &mut y).unwrap(),
    }
    y
}

/// act'(z) * dy through the element-wise ops.
fn act_backward(act: Activation, z: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dz = vec![0.0; z.len()];
    match act {
        Activation::Identity => dz.copy_from_slice(dy),
        Activation::Relu => relu_backward(z, dy, &mut dz).unwrap(),
        Activation::LeakyRelu(s) => leaky_relu_backward(s, z, dy, &mut dz).unwrap(),
        Activation::Elu(a) => elu_backward(a, z, dy, &mut dz).unwrap(),
        Activation::Selu => selu_backward(z, dy, &mut dz).unwrap(),
    }
    dz
}

fn add(a: &mut [f32], b: Option<&[f32]>) {
    if let Some(b) = b {
        a.iter_mut().zip(b).for_each(|(a, &b)| *a += b);
    }
}

/// Fused against unfused Batch Norm training, forward and backward.
fn check_bn(what: &str, layout: &Layout, opt: &BnOptions, act: Activation, with_residual: bool, renorm: bool) {
    let (c, len) = (layout.channels(), layout.len());
    let gc = opt.groups(layout.batch()) * c;
    let x = normal(len, 1, 0.5, 2.0);
    let r = normal(len, 2, 0.0, 1.0);
    let res = if with_residual { Some(&r[..]) } else { None };
    let dy = normal(len, 3, 0.0, 1.0);
    let gamma = normal(c, 4, 1.0, 0.5);
    let beta = normal(c, 5, 0.0, 1.0);
    let what = format!("{what} {act:?} residual={with_residual}");

    // Unfused: z = BN(x) + residual, y = act(z); dz = act'(z) dy, BN's backward of dz.
    let (mut mm1, mut mv1, mut sm1, mut si1) = (vec![0.0; c], vec![1.0; c], vec![0.0; gc], vec![0.0; gc]);
    let (mut rm1, mut rs1, mut sr1, mut sd1) = (vec![0.0; c], vec![1.0; c], vec![0.0; c], vec![0.0; c]);
    let mut z = vec![0.0; len];
    let mut st1 = BnState { moving_mean: Some(&mut mm1), moving_var: Some(&mut mv1), saved_mean: Some(&mut sm1), saved_invstd: Some(&mut si1), ..Default::default() };
    if renorm {
        st1.renorm_mean = Some(&mut rm1);
        st1.renorm_stddev = Some(&mut rs1);
        st1.saved_r = Some(&mut sr1);
        st1.saved_d = Some(&mut sd1);
    }
    bn_forward_training_ex(layout, opt, &x, &mut z, Some(&gamma), Some(&beta), &mut st1).unwrap();
    add(&mut z, res);
    let y1 = act_forward(act, &z);
    let dz = act_backward(act, &z, &dy);
    let (mut dx1, mut dg1, mut db1) = (vec![0.0; len], vec![0.0; c], vec![0.0; c]);
    bn_backward_ex(layout, opt, &x, &dz, Some(&gamma), &mut st1, &mut dx1, Some((&mut dg1, &mut db1))).unwrap();

    // Fused.
    let (mut mm2, mut mv2, mut sm2, mut si2) = (vec![0.0; c], vec![1.0; c], vec![0.0; gc], vec![0.0; gc]);
    let (mut rm2, mut rs2, mut sr2, mut sd2) = (vec![0.0; c], vec![1.0; c], vec![0.0; c], vec![0.0; c]);
    let mut y2 = vec![0.0; len];
    let mut st2 = BnState { moving_mean: Some(&mut mm2), moving_var: Some(&mut mv2), saved_mean: Some(&mut sm2), saved_invstd: Some(&mut si2), ..Default::default() };
    if renorm {
        st2.renorm_mean = Some(&mut rm2);
        st2.renorm_stddev = Some(&mut rs2);
        st2.saved_r = Some(&mut sr2);
        st2.saved_d = Some(&mut sd2);
    }
    bn_act_forward_training(layout, opt, act, &x, res, &mut y2, Some(&gamma), Some(&beta), &mut st2).unwrap();
    let (mut dx2, mut dr2, mut dg2, mut db2) = (vec![0.0; len], vec![0.0; len], vec![0.0; c], vec![0.0; c]);
    let dres = if with_residual { Some(&mut dr2[..]) } else { None };
    bn_act_backward(layout, opt, act, &x, res, &dy, Some(&gamma), Some(&beta), &mut st2, &mut dx2, dres, Some((&mut dg2, &mut db2))).unwrap();

    assert_close(&format!("{what} y"), &y2, &y1, 1e-5);
    assert_close(&format!("{what} saved mean"), &sm2, &sm1, 1e-6);
    assert_close(&format!("{what} saved invstd"), &si2, &si1, 1e-6);
    assert_close(&format!("{what} moving mean"), &mm2, &mm1, 1e-6);
    assert_close(&format!("{what} moving var"), &mv2, &mv1, 1e-6);
    if renorm {
        assert_close(&format!("{what} saved r"), &sr2, &sr1, 1e-6);
        assert_close(&format!("{what} saved d"), &sd2, &sd1, 1e-6);
        assert_close(&format!("{what} renorm mean"), &rm2, &rm1, 1e-6);
        assert_close(&format!("{what} renorm stddev"), &rs2, &rs1, 1e-6);
    }
    assert_close(&format!("{what} dx"), &dx2, &dx1, 1e-4);
    assert_close(&format!("{what} dgamma"), &dg2, &dg1, 1e-4);
    assert_close(&format!("{what} dbeta"), &db2, &db1, 1e-4);
    if with_residual {
        assert_close(&format!("{what} dresidual"), &dr2, &dz, 1e-5);
    }
}

#[test]
fn bn_act_training_equals_unfused() {
    for layout in [Layout::nchw(4, 6, 3, 5), Layout::nhwc(3, 4, 5, 7)] {
        for act in ACTS {
            for with_residual in [true, false] {
                check_bn(&format!("{:?}", layout.dims()), &layout, &BnOptions::torch(), act, with_residual, false);
            }
        }
    }
}

#[test]
fn bn_act_training_with_ghost_batches_and_renorm_equals_unfused() {
    let layout = Layout::nchw(6, 4, 2, 5);
    let ghost = BnOptions::default().virtual_batch(2, Grouping::Contiguous);
    let renorm = BnOptions::default().renorm(0.9, Some(1.5), Some(0.5), Some(0.5));
    for act in [Activation::Relu, Activation::Elu(1.0)] {
        check_bn("ghost", &layout, &ghost, act, true, false);
        check_bn("renorm", &layout, &renorm, act, true, true);
    }
}

#[test]
fn bn_act_inference_equals_unfused() {
    let layout = Layout::nhwc(2, 3, 3, 6);
    let x = normal(layout.len(), 7, 0.0, 2.0);
    let r = normal(layout.len(), 8, 0.0, 1.0);
    let (g, b) = (normal(6, 9, 1.0, 0.3), normal(6, 10, 0.0, 1.0));
    let mm = normal(6, 11, 0.0, 1.0);
    let mv: Vec<f32> = normal(6, 12, 0.0, 1.0).iter().map(|v| v.abs() + 0.5).collect();
    let opt = BnOptions::default();
    for act in ACTS {
        for res in [Some(&r[..]), None] {
            let mut z = vec![0.0; x.len()];
            bn_forward_inference(&layout, &opt, &x, &mut z, Some(&g), Some(&b), &mm, &mv).unwrap();
            add(&mut z, res);
            let want = act_forward(act, &z);
            let mut y = vec![0.0; x.len()];
            bn_act_forward_inference(&layout, &opt, act, &x, res, &mut y, Some(&g), Some(&b), &mm, &mv).unwrap();
            assert_close(&format!("inference {act:?} residual={}", res.is_some()), &y, &want, 1e-5);
        }
    }
}

#[test]
fn group_norm_act_equals_unfused() {
    let (n, c, h, w, groups) = (3i64, 8i64, 4i64, 5i64, 4);
    for layout in [Layout::nchw(n, c, h, w), Layout::nhwc(n, h, w, c)] {
        let (cu, len, ng) = (c as usize, layout.len(), (n * groups as i64) as usize);
        let x = normal(len, 13, 2.0, 3.0);
        let r = normal(len, 14, 0.0, 1.0);
        let dy = normal(len, 15, 0.0, 1.0);
        let gamma = normal(cu, 16, 1.0, 0.5);
        let beta = normal(cu, 17, 0.0, 0.5);
        let opt = GnOptions::default().groups(groups);
        for act in ACTS {
            for with_residual in [true, false] {
                let what = format!("gn {:?} {act:?} residual={with_residual}", layout.dims());
                let res = if with_residual { Some(&r[..]) } else { None };
                let (mut z, mut sm1, mut si1) = (vec![0.0; len], vec![0.0; ng], vec![0.0; ng]);
                group_norm_forward(&layout, &opt, &x, &mut z, Some(&gamma), Some(&beta), Some(Saved { mean: &mut sm1, invstd: &mut si1 })).unwrap();
                add(&mut z, res);
                let y1 = act_forward(act, &z);
                let dz = act_backward(act, &z, &dy);
                let (mut dx1, mut dg1, mut db1) = (vec![0.0; len], vec![0.0; cu], vec![0.0; cu]);
                group_norm_backward(&layout, &opt, &x, &dz, Some(&gamma), &sm1, &si1, &mut dx1, Some((&mut dg1, &mut db1))).unwrap();

                let (mut y2, mut sm2, mut si2) = (vec![0.0; len], vec![0.0; ng], vec![0.0; ng]);
                group_norm_act_forward(&layout, &opt, act, &x, res, &mut y2, Some(&gamma), Some(&beta), Some(Saved { mean: &mut sm2, invstd: &mut si2 })).unwrap();
                let (mut dx2, mut dr2, mut dg2, mut db2) = (vec![0.0; len], vec![0.0; len], vec![0.0; cu], vec![0.0; cu]);
                let dres = if with_residual { Some(&mut dr2[..]) } else { None };
                group_norm_act_backward(&layout, &opt, act, &x, res, &dy, Some(&gamma), Some(&beta), &sm2, &si2, &mut dx2, dres, Some((&mut dg2, &mut db2))).unwrap();

                assert_close(&format!("{what} y"), &y2, &y1, 1e-5);
                assert_close(&format!("{what} saved mean"), &sm2, &sm1, 1e-6);
                assert_close(&format!("{what} saved invstd"), &si2, &si1, 1e-6);
                assert_close(&format!("{what} dx"), &dx2, &dx1, 1e-4);
                assert_close(&format!("{what} dgamma"), &dg2, &dg1, 1e-4);
                assert_close(&format!("{what} dbeta"), &db2, &db1, 1e-4);
                if with_residual {
                    assert_close(&format!("{what} dresidual"), &dr2, &dz, 1e-5);
                }
            }
        }
    }
}

#[test]
fn fused_errors() {
    let layout = Layout::nchw(2, 4, 3, 1);
    let x = normal(layout.len(), 18, 0.0, 1.0);
    let mut y = vec![0.0; x.len()];
    let opt = GnOptions::default().groups(2);
    let (mut sm, mut si) = (vec![0.0; 4], vec![0.0; 4]);
    // The library's checks: a non-finite ELU alpha, dresidual without a residual.
    let e = group_norm_act_forward(&layout, &opt, Activation::Elu(f32::NAN), &x, None, &mut y, None, None, Some(Saved { mean: &mut sm, invstd: &mut si })).unwrap_err();
    assert_eq!(e.status, normkit_sys::NK_ERR_BAD_ARGUMENT);
    assert!(e.message.contains("act_param"), "{}", e.message);
    let e = bn_act_forward_training(&layout, &BnOptions::default(), Activation::LeakyRelu(f32::INFINITY), &x, None, &mut y, None, None, &mut BnState::default()).unwrap_err();
    assert_eq!(e.status, normkit_sys::NK_ERR_BAD_ARGUMENT);
    group_norm_act_forward(&layout, &opt, Activation::Relu, &x, None, &mut y, None, None, Some(Saved { mean: &mut sm, invstd: &mut si })).unwrap();
    let (mut dx, mut dr) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let e = group_norm_act_backward(&layout, &opt, Activation::Relu, &x, None, &y, None, None, &sm, &si, &mut dx, Some(&mut dr), None).unwrap_err();
    assert_eq!(e.status, normkit_sys::NK_ERR_BAD_ARGUMENT);
    assert!(e.message.contains("dresidual"), "{}", e.message);
    // Backward needs the saved statistics of a training forward.
    let e = bn_act_backward(&layout, &BnOptions::default(), Activation::Relu, &x, None, &y, None, None, &mut BnState::default(), &mut dx, None, None).unwrap_err();
    assert_eq!(e.status, normkit_sys::NK_ERR_NULL_POINTER);
    // Lengths are checked before C is called.
    let e = bn_act_forward_inference(&layout, &BnOptions::default(), Activation::Relu, &x, Some(&x[1..]), &mut y, None, None, &[0.0; 4], &[1.0; 4]).unwrap_err();
    assert_eq!(e.status, normkit_sys::NK_ERR_BAD_SHAPE);
    assert!(e.message.contains("residual"), "{}", e.message);
    let mut short = vec![0.0; x.len() - 1];
    let e = group_norm_act_backward(&layout, &opt, Activation::Relu, &x, Some(&x), &y, None, None, &sm, &si, &mut dx, Some(&mut short), None).unwrap_err();
    assert_eq!(e.status, normkit_sys::NK_ERR_BAD_SHAPE);
    assert_eq!(Activation::Elu(0.5).raw(), (normkit_sys::NK_ACT_ELU, 0.5));
    assert_eq!(Activation::Identity.raw().0, normkit_sys::NK_ACT_NONE);
}
