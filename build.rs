//! Builds the variadic C entry points and the version script that makes the
//! library export exactly the names in src/exports.txt, with the soname
//! libHotBackup.so.MAJOR taken from the package version.

fn main() {
    println!("cargo:rerun-if-changed=src/c/shim.c");
    println!("cargo:rerun-if-changed=src/exports.txt");
    cc::Build::new()
        .file("src/c/shim.c")
        .flag_if_supported("-fvisibility=hidden")
        .warnings_into_errors(true)
        .link_lib_modifier("+whole-archive")
        .compile("hbshim");

    let list = std::fs::read_to_string("src/exports.txt").expect("src/exports.txt");
    let names: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let script = format!(
        "{{\n  global:\n{}\n  local: *;\n}};\n",
        names
            .iter()
            .map(|n| format!("    {n};"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    let path = format!("{out}/libHotBackup.map");
    std::fs::write(&path, script).expect("write version script");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={path}");
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("version");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libHotBackup.so.{major}");
}
