//! Hard limits on what one input may cost.

/// Hard limits on what one input may cost. The defaults fit any real
/// checkpoint's pickle (hundreds of thousands of tensors) and stay far below
/// a machine's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Opcodes executed, over all pickles of a stream.
    pub max_ops: u64,
    /// Memo entries.
    pub max_memo: usize,
    /// Stack depth (objects plus marks).
    pub max_stack: usize,
    /// Items in one container (tuple, list, dict, set).
    pub max_container: usize,
    /// Bytes the machine may allocate for objects (strings, containers,
    /// nodes), and again for the [`Value`](crate::Value) tree handed out (which is also
    /// capped at 256 bytes per input byte plus 16 MiB).
    pub max_alloc: usize,
    /// Nesting depth of the [`Value`](crate::Value) tree handed out.
    pub max_depth: usize,
    /// Pickles in one stacked stream.
    pub max_pickles: usize,
    /// Depth of nested pickles (`pickle.loads(b"...")`) analysed.
    pub max_nested: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ops: 50_000_000,
            max_memo: 4_000_000,
            max_stack: 1_000_000,
            max_container: 16_000_000,
            max_alloc: 1 << 30,
            max_depth: 128,
            max_pickles: 10_000,
            max_nested: 4,
        }
    }
}
