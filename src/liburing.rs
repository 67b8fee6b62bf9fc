//! liburing's `struct io_uring` and the kernel's io_uring ABI, as far as
//! the library reads them: the head of the ring structure liburing fills
//! in, the submission entry, the setup parameters' flags, and the opcode
//! and flag numbers. Opcodes and entry flags come from the `io-uring` crate
//! (generated from the kernel's io_uring.h); the few numbers it keeps
//! private are spelled here. The test at the bottom checks every field and
//! every number against the installed liburing headers.

use io_uring::{opcode, squeue, types};
use libc::c_int;
use std::sync::atomic::AtomicU32;

/// The fields of liburing's `struct io_uring_sq` the library reads; the
/// rest of the structure is `Ring::_sq_rest`.
#[repr(C)]
pub struct SubmissionQueue {
    pub khead: *const AtomicU32,
    pub ktail: *const AtomicU32,
    pub kring_mask: *const u32,
    pub kring_entries: *const u32,
    pub kflags: *const u32,
    pub kdropped: *const u32,
    pub array: *mut u32,
    pub sqes: *mut Sqe,
    pub sqe_head: u32,
    pub sqe_tail: u32,
}

/// The head of liburing's `struct io_uring_cq`.
#[repr(C)]
pub struct CompletionQueue {
    pub khead: *const AtomicU32,
    pub ktail: *const AtomicU32,
}

/// The head of liburing's `struct io_uring`, the same layout since
/// liburing 2.0: `sq`, `cq`, `flags`, `ring_fd`.
#[repr(C)]
pub struct Ring {
    pub sq: SubmissionQueue,
    _sq_rest: [u8; SQ_SIZE - core::mem::size_of::<SubmissionQueue>()],
    pub cq: CompletionQueue,
    _cq_rest: [u8; CQ_SIZE - core::mem::size_of::<CompletionQueue>()],
    pub flags: u32,
    pub ring_fd: c_int,
}

/// sizeof(struct io_uring_sq), sizeof(struct io_uring_cq).
const SQ_SIZE: usize = 104;
const CQ_SIZE: usize = 88;

/// The head of `struct io_uring_params`, which `io_uring_queue_init_params`
/// reads: the setup flags are the third field.
#[repr(C)]
pub struct ParamsHead {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
}

/// A submission queue entry (`struct io_uring_sqe`), its unions by the
/// name of the member the library uses: `op_flags` is `rw_flags`,
/// `fsync_flags`, `timeout_flags`...
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Sqe {
    pub opcode: u8,
    pub flags: u8,
    pub ioprio: u16,
    pub fd: i32,
    pub off: u64,
    pub addr: u64,
    pub len: u32,
    pub op_flags: u32,
    pub user_data: u64,
    pub buf_index: u16,
    pub personality: u16,
    pub splice_fd_in: i32,
    pub addr3: u64,
    pub _pad: u64,
}
const _: () = assert!(core::mem::size_of::<Sqe>() == 64);

// Opcodes (IORING_OP_*).
pub const OP_NOP: u8 = opcode::Nop::CODE;
pub const OP_READV: u8 = opcode::Readv::CODE;
pub const OP_WRITEV: u8 = opcode::Writev::CODE;
pub const OP_FSYNC: u8 = opcode::Fsync::CODE;
pub const OP_READ_FIXED: u8 = opcode::ReadFixed::CODE;
pub const OP_WRITE_FIXED: u8 = opcode::WriteFixed::CODE;
pub const OP_POLL_ADD: u8 = opcode::PollAdd::CODE;
pub const OP_SYNC_FILE_RANGE: u8 = opcode::SyncFileRange::CODE;
pub const OP_RECVMSG: u8 = opcode::RecvMsg::CODE;
pub const OP_TIMEOUT: u8 = opcode::Timeout::CODE;
pub const OP_ACCEPT: u8 = opcode::Accept::CODE;
pub const OP_FALLOCATE: u8 = opcode::Fallocate::CODE;
pub const OP_READ: u8 = opcode::Read::CODE;
pub const OP_WRITE: u8 = opcode::Write::CODE;
pub const OP_FADVISE: u8 = opcode::Fadvise::CODE;
pub const OP_RECV: u8 = opcode::Recv::CODE;
pub const OP_EPOLL_CTL: u8 = opcode::EpollCtl::CODE;
pub const OP_LINKAT: u8 = opcode::LinkAt::CODE;

// Entry flags (IOSQE_*).
pub const IOSQE_ASYNC: u8 = squeue::Flags::ASYNC.bits();
pub const IOSQE_CQE_SKIP_SUCCESS: u8 = squeue::Flags::SKIP_SUCCESS.bits();

// Per-opcode flags.
pub const IORING_FSYNC_DATASYNC: u32 = types::FsyncFlags::DATASYNC.bits();
pub const IORING_TIMEOUT_MULTISHOT: u32 = types::TimeoutFlags::MULTISHOT.bits();
/// Private in the crate (set by its `PollAdd::multi`, `RecvMsgMulti`).
pub const IORING_POLL_ADD_MULTI: u32 = 1;
pub const IORING_RECV_MULTISHOT: u16 = 1 << 1;

// Setup flags (IORING_SETUP_*) a followed ring may have, private in the
// crate (its builder sets them).
pub const IORING_SETUP_CQSIZE: u32 = 1 << 3;
pub const IORING_SETUP_CLAMP: u32 = 1 << 4;
pub const IORING_SETUP_ATTACH_WQ: u32 = 1 << 5;
pub const IORING_SETUP_SUBMIT_ALL: u32 = 1 << 7;
pub const IORING_SETUP_COOP_TASKRUN: u32 = 1 << 8;
pub const IORING_SETUP_TASKRUN_FLAG: u32 = 1 << 9;
pub const IORING_SETUP_SQE128: u32 = 1 << 10;
pub const IORING_SETUP_CQE32: u32 = 1 << 11;
pub const IORING_SETUP_SINGLE_ISSUER: u32 = 1 << 12;

/// The layouts and numbers above against the installed liburing headers
/// (liburing-dev): a C program prints each as `name value`.
#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::mem::{offset_of, size_of};

    const C_NAMES: &[&str] = &[
        "sizeof(struct io_uring_sq)",
        "sizeof(struct io_uring_cq)",
        "offsetof(struct io_uring, sq)",
        "offsetof(struct io_uring, cq)",
        "offsetof(struct io_uring, flags)",
        "offsetof(struct io_uring, ring_fd)",
        "offsetof(struct io_uring_sq, khead)",
        "offsetof(struct io_uring_sq, ktail)",
        "offsetof(struct io_uring_sq, kring_mask)",
        "offsetof(struct io_uring_sq, kring_entries)",
        "offsetof(struct io_uring_sq, kflags)",
        "offsetof(struct io_uring_sq, kdropped)",
        "offsetof(struct io_uring_sq, array)",
        "offsetof(struct io_uring_sq, sqes)",
        "offsetof(struct io_uring_sq, sqe_head)",
        "offsetof(struct io_uring_sq, sqe_tail)",
        "offsetof(struct io_uring_cq, khead)",
        "offsetof(struct io_uring_cq, ktail)",
        "offsetof(struct io_uring_params, sq_entries)",
        "offsetof(struct io_uring_params, cq_entries)",
        "offsetof(struct io_uring_params, flags)",
        "sizeof(struct io_uring_sqe)",
        "offsetof(struct io_uring_sqe, opcode)",
        "offsetof(struct io_uring_sqe, flags)",
        "offsetof(struct io_uring_sqe, ioprio)",
        "offsetof(struct io_uring_sqe, fd)",
        "offsetof(struct io_uring_sqe, off)",
        "offsetof(struct io_uring_sqe, addr)",
        "offsetof(struct io_uring_sqe, len)",
        "offsetof(struct io_uring_sqe, rw_flags)",
        "offsetof(struct io_uring_sqe, fsync_flags)",
        "offsetof(struct io_uring_sqe, timeout_flags)",
        "offsetof(struct io_uring_sqe, user_data)",
        "offsetof(struct io_uring_sqe, buf_index)",
        "offsetof(struct io_uring_sqe, personality)",
        "offsetof(struct io_uring_sqe, splice_fd_in)",
        "offsetof(struct io_uring_sqe, addr3)",
        "IORING_OP_NOP",
        "IORING_OP_READV",
        "IORING_OP_WRITEV",
        "IORING_OP_FSYNC",
        "IORING_OP_READ_FIXED",
        "IORING_OP_WRITE_FIXED",
        "IORING_OP_POLL_ADD",
        "IORING_OP_SYNC_FILE_RANGE",
        "IORING_OP_RECVMSG",
        "IORING_OP_TIMEOUT",
        "IORING_OP_ACCEPT",
        "IORING_OP_FALLOCATE",
        "IORING_OP_READ",
        "IORING_OP_WRITE",
        "IORING_OP_FADVISE",
        "IORING_OP_RECV",
        "IORING_OP_EPOLL_CTL",
        "IORING_OP_LINKAT",
        "IOSQE_ASYNC",
        "IOSQE_CQE_SKIP_SUCCESS",
        "IORING_FSYNC_DATASYNC",
        "IORING_TIMEOUT_MULTISHOT",
        "IORING_POLL_ADD_MULTI",
        "IORING_RECV_MULTISHOT",
        "IORING_SETUP_CQSIZE",
        "IORING_SETUP_CLAMP",
        "IORING_SETUP_ATTACH_WQ",
        "IORING_SETUP_SUBMIT_ALL",
        "IORING_SETUP_COOP_TASKRUN",
        "IORING_SETUP_TASKRUN_FLAG",
        "IORING_SETUP_SQE128",
        "IORING_SETUP_CQE32",
        "IORING_SETUP_SINGLE_ISSUER",
    ];

    /// Not in liburing 2.3's headers (Debian 12's): checked where the
    /// installed headers have them.
    const NEWER_THAN_LIBURING_2_3: &[&str] = &["IORING_TIMEOUT_MULTISHOT"];

    /// The same, in order, from the Rust side.
    fn rust_values() -> Vec<usize> {
        vec![
            offset_of!(Ring, cq) - offset_of!(Ring, sq),
            offset_of!(Ring, flags) - offset_of!(Ring, cq),
            offset_of!(Ring, sq),
            offset_of!(Ring, cq),
            offset_of!(Ring, flags),
            offset_of!(Ring, ring_fd),
            offset_of!(SubmissionQueue, khead),
            offset_of!(SubmissionQueue, ktail),
            offset_of!(SubmissionQueue, kring_mask),
            offset_of!(SubmissionQueue, kring_entries),
            offset_of!(SubmissionQueue, kflags),
            offset_of!(SubmissionQueue, kdropped),
            offset_of!(SubmissionQueue, array),
            offset_of!(SubmissionQueue, sqes),
            offset_of!(SubmissionQueue, sqe_head),
            offset_of!(SubmissionQueue, sqe_tail),
            offset_of!(CompletionQueue, khead),
            offset_of!(CompletionQueue, ktail),
            offset_of!(ParamsHead, sq_entries),
            offset_of!(ParamsHead, cq_entries),
            offset_of!(ParamsHead, flags),
            size_of::<Sqe>(),
            offset_of!(Sqe, opcode),
            offset_of!(Sqe, flags),
            offset_of!(Sqe, ioprio),
            offset_of!(Sqe, fd),
            offset_of!(Sqe, off),
            offset_of!(Sqe, addr),
            offset_of!(Sqe, len),
            offset_of!(Sqe, op_flags),
            offset_of!(Sqe, op_flags),
            offset_of!(Sqe, op_flags),
            offset_of!(Sqe, user_data),
            offset_of!(Sqe, buf_index),
            offset_of!(Sqe, personality),
            offset_of!(Sqe, splice_fd_in),
            offset_of!(Sqe, addr3),
        ]
        .into_iter()
        .chain(
            [
                OP_NOP,
                OP_READV,
                OP_WRITEV,
                OP_FSYNC,
                OP_READ_FIXED,
                OP_WRITE_FIXED,
                OP_POLL_ADD,
                OP_SYNC_FILE_RANGE,
                OP_RECVMSG,
                OP_TIMEOUT,
                OP_ACCEPT,
                OP_FALLOCATE,
                OP_READ,
                OP_WRITE,
                OP_FADVISE,
                OP_RECV,
                OP_EPOLL_CTL,
                OP_LINKAT,
                IOSQE_ASYNC,
                IOSQE_CQE_SKIP_SUCCESS,
            ]
            .map(usize::from),
        )
        .chain(
            [
                IORING_FSYNC_DATASYNC,
                IORING_TIMEOUT_MULTISHOT,
                IORING_POLL_ADD_MULTI,
                u32::from(IORING_RECV_MULTISHOT),
                IORING_SETUP_CQSIZE,
                IORING_SETUP_CLAMP,
                IORING_SETUP_ATTACH_WQ,
                IORING_SETUP_SUBMIT_ALL,
                IORING_SETUP_COOP_TASKRUN,
                IORING_SETUP_TASKRUN_FLAG,
                IORING_SETUP_SQE128,
                IORING_SETUP_CQE32,
                IORING_SETUP_SINGLE_ISSUER,
            ]
            .map(|v| v as usize),
        )
        .collect()
    }

    /// Each of `C_NAMES` as the installed headers define it.
    fn header_values() -> BTreeMap<String, usize> {
        assert!(
            std::path::Path::new("/usr/include/liburing.h").exists(),
            "/usr/include/liburing.h is missing: install liburing-dev (ci/setup.sh does)"
        );
        let mut src = String::from(
            "#include <stddef.h>\n#include <stdio.h>\n#include <liburing.h>\nint main(void) {\n",
        );
        for name in C_NAMES {
            let print = format!("printf(\"%s %zu\\n\", \"{name}\", (size_t)({name}));");
            if name.starts_with("IORING_OP_") || name.contains('(') {
                src += &format!("    {print}\n");
            } else {
                // A macro: newer ones may be missing from older headers.
                src += &format!("#ifdef {name}\n    {print}\n#endif\n");
            }
        }
        src += "    return 0;\n}\n";
        crate::c_program::output_of("hotbackup_liburing", &src, &[])
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn layouts_and_numbers_match_the_liburing_headers() {
        let c = header_values();
        let rust = rust_values();
        assert_eq!(rust.len(), C_NAMES.len());
        for (name, ours) in C_NAMES.iter().zip(rust) {
            if NEWER_THAN_LIBURING_2_3.contains(name) && !c.contains_key(*name) {
                continue;
            }
            assert_eq!(Some(&ours), c.get(*name), "{name}");
        }
    }
}
