extern "C" fn open_impl(p: *const libc::c_char, f: libc::c_int, m: libc::mode_t) -> libc::c_int { let _=(p,m); f }
core::arch::global_asm!(".globl hb_open", ".hidden hb_open", ".set hb_open, {}", sym open_impl);
#[no_mangle]
pub extern "C" fn write(fd: i32, b: *const libc::c_void, n: usize) -> isize { let _=(fd,b); n as isize }
