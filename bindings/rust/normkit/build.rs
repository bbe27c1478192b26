//! Passes normkit-sys' findings on: the library's rpath for this crate's tests
//! and examples, and whether the *_ex functions are in the library.
use std::env;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(normkit_has_bn_ex)");
    if let Ok(dir) = env::var("DEP_NORMKIT_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    if env::var("DEP_NORMKIT_HAS_BN_EX").is_ok() {
        println!("cargo:rustc-cfg=normkit_has_bn_ex");
    }
}
