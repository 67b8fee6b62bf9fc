fn main() {
    cc::Build::new().file("src/c/shim.c").link_lib_modifier("+whole-archive").compile("hbshim");
    let out = std::env::var("OUT_DIR").unwrap();
    std::fs::write(format!("{out}/hb.map"), "{ global: open; write; local: *; };\n").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={out}/hb.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libHotBackup.so.1");
}
