//! Every struct's size and field offsets against C: bindings/common/layout.c
//! is compiled with the system's C compiler and run.
use normkit_sys::*;
use std::collections::HashMap;
use std::mem::size_of;
use std::path::PathBuf;
use std::process::Command;

fn c_layout() -> HashMap<String, usize> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../common/layout.c");
    let exe = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("normkit_layout");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(cc)
        .args(["-std=c99", "-I", env!("NORMKIT_INCLUDE_DIR")])
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("running the C compiler");
    assert!(st.success(), "compiling {}", src.display());
    let out = Command::new(&exe).output().expect("running the layout helper");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// offsetof without std::mem::offset_of! (Rust 1.77), so Debian 12's rustc 1.63 builds it.
macro_rules! offset_of {
    ($t:ty, $f:ident) => {{
        let u = std::mem::MaybeUninit::<$t>::uninit();
        let base = u.as_ptr();
        (unsafe { std::ptr::addr_of!((*base).$f) } as usize) - (base as usize)
    }};
}

macro_rules! check_struct {
    ($c:expr, $t:ident { $($f:ident),* $(,)? }) => {{
        let c = &$c;
        assert_eq!(c[stringify!($t)], size_of::<$t>(), "sizeof({})", stringify!($t));
        let mut n = 0;
        $(
            let key = concat!(stringify!($t), ".", stringify!($f));
            assert_eq!(c[key], offset_of!($t, $f), "offsetof {}", key);
            n += 1;
        )*
        let prefix = concat!(stringify!($t), ".");
        assert_eq!(c.keys().filter(|k| k.starts_with(prefix)).count(), n,
                   "{}: field count differs from C", stringify!($t));
    }};
}

#[test]
fn struct_layouts_match_c() {
    let c = c_layout();
    check_struct!(c, nk_tensor_desc { dtype, ndim, dims, num_axes, axes });
    check_struct!(c, nk_bn_options { struct_size, epsilon, momentum, momentum_convention,
        moving_variance, virtual_batch_size, virtual_grouping, renorm, renorm_momentum, rmax,
        rmin, dmax });
    check_struct!(c, nk_bn_state { struct_size, moving_mean, moving_var, moving_stddev,
        renorm_mean, renorm_stddev, adjustment_scale, adjustment_bias, saved_mean, saved_invstd,
        saved_r, saved_d });
    check_struct!(c, nk_gn_options { struct_size, epsilon, groups });
    check_struct!(c, nk_in_options { struct_size, epsilon, momentum, momentum_convention,
        moving_variance });
    check_struct!(c, nk_ln_options { struct_size, epsilon });
    check_struct!(c, nk_sn_options { struct_size, epsilon, momentum, use_bn });
}

#[test]
fn options_init_matches_the_macro_and_version_matches() {
    let mut o = NK_BN_OPTIONS_INIT;
    o.epsilon = 0.0;
    unsafe { nk_bn_options_init(&mut o) };
    assert_eq!(o, NK_BN_OPTIONS_INIT);
    let mut g = NK_GN_OPTIONS_INIT;
    g.groups = 0;
    unsafe { nk_gn_options_init(&mut g) };
    assert_eq!(g, NK_GN_OPTIONS_INIT);
    let mut i = NK_IN_OPTIONS_INIT;
    i.momentum = 0.0;
    unsafe { nk_in_options_init(&mut i) };
    assert_eq!(i, NK_IN_OPTIONS_INIT);
    let mut l = NK_LN_OPTIONS_INIT;
    l.epsilon = 0.0;
    unsafe { nk_ln_options_init(&mut l) };
    assert_eq!(l, NK_LN_OPTIONS_INIT);
    let mut s = NK_SN_OPTIONS_INIT;
    s.use_bn = 0;
    unsafe { nk_sn_options_init(&mut s) };
    assert_eq!(s, NK_SN_OPTIONS_INIT);
    assert_eq!(unsafe { nk_version_major() }, NK_VERSION_MAJOR);
}
