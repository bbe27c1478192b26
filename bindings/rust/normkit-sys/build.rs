//! Finds libnormkit: NORMKIT_LIB_DIR, else pkg-config's output (run as a
//! plain command), else the repository's build/ folder. No dependencies.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn pkg_config(args: &[&str]) -> Option<String> {
    let out = Command::new("pkg-config").args(args).arg("normkit").output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn first_flag(s: &str, flag: &str) -> Option<String> {
    s.split_whitespace().find_map(|w| w.strip_prefix(flag)).map(str::to_string)
}

fn main() {
    println!("cargo:rerun-if-env-changed=NORMKIT_LIB_DIR");
    println!("cargo:rerun-if-env-changed=NORMKIT_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let repo = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../..");
    let lib_dir = env::var("NORMKIT_LIB_DIR")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            pkg_config(&["--libs-only-L"])
                .and_then(|s| first_flag(&s, "-L"))
                .or_else(|| pkg_config(&["--variable=libdir"]).filter(|s| !s.is_empty()))
        })
        .unwrap_or_else(|| repo.join("build").to_string_lossy().into_owned());
    let include_dir = env::var("NORMKIT_INCLUDE_DIR")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| pkg_config(&["--cflags-only-I"]).and_then(|s| first_flag(&s, "-I")))
        .unwrap_or_else(|| repo.join("include").to_string_lossy().into_owned());

    println!("cargo:rustc-link-search=native={lib_dir}");
    println!("cargo:rustc-link-lib=dylib=normkit");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    println!("cargo:rustc-env=NORMKIT_INCLUDE_DIR={include_dir}");
    // For dependent crates: DEP_NORMKIT_LIB_DIR, DEP_NORMKIT_INCLUDE_DIR.
    println!("cargo:lib_dir={lib_dir}");
    println!("cargo:include_dir={include_dir}");
    let so = Path::new(&lib_dir).join("libnormkit.so");
    println!("cargo:rerun-if-changed={}", so.display());
}
