// The server connection goes through libmariadb (Connector/C), the library
// the `mariadb` client uses: same option files, protocols and auth plugins.
fn main() {
    println!("cargo:rustc-link-lib=dylib=mariadb");
    println!("cargo:rerun-if-changed=build.rs");
}
