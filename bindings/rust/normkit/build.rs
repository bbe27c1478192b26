//! Passes normkit-sys' findings on: the library's rpath for this crate's tests
//! and examples.
use std::env;

fn main() {
    if let Ok(dir) = env::var("DEP_NORMKIT_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
