//! `tensorseal`: the command-line binary. Everything but the allocator is in
//! the library (`src/lib.rs`), which the Python package runs as well.
#![forbid(unsafe_code)]

use std::process::ExitCode;

/// mimalloc instead of the system allocator: glibc returns freed memory of
/// its per-thread arenas to the kernel (`madvise`) after nearly every file a
/// parallel `scan` looks at, and each such call interrupts the other CPUs to
/// flush their TLBs; on a directory of small pickles that was a third of the
/// scan's time (BENCHMARKS.md, "Scanner").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ExitCode::from(tensorseal::run(std::env::args_os()))
}
