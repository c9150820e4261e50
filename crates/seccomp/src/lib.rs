//! berth-seccomp: the OCI seccomp section compiled to classic BPF in pure Rust
//! (no libseccomp), and a built-in default profile equivalent to Docker's.
//!
//! PUBLIC API CONTRACT (used by berth-runtime; keep these signatures):
//!
//! ```ignore
//! #[repr(C)] #[derive(Clone, Copy, Debug, PartialEq, Eq)]
//! pub struct SockFilter { pub code: u16, pub jt: u8, pub jf: u8, pub k: u32 }
//! pub struct Program { pub filter: Vec<SockFilter>, pub flags: u32 /* SECCOMP_FILTER_FLAG_* */ }
//! /// Compile for the running architecture (x86_64 required; aarch64 if cheap).
//! pub fn compile(seccomp: &oci_spec::runtime::LinuxSeccomp) -> Result<Program, Error>;
//! /// seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog); caller has set no_new_privs or holds CAP_SYS_ADMIN.
//! pub fn install(prog: &Program) -> std::io::Result<()>;
//! /// Docker's default profile, resolved for the given capability set (names like "CAP_SYS_ADMIN").
//! pub fn default_profile(capabilities: &[String]) -> oci_spec::runtime::LinuxSeccomp;
//! pub fn syscall_number(name: &str) -> Option<i64>;  // x86_64 table
//! ```
