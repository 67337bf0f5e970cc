//! Tensor- and pipeline-parallel loading and saving of safetensors
//! checkpoints: each rank reads (and writes) only the bytes it keeps.
//!
//! - [`Plan`]: an ordered list of (glob or regex → [`Rule`]) with an
//!   optional pipeline-stage filter, from JSON ([`Plan::from_json`]; the
//!   schema is documented in [`mod@plan`]). `shard(dim)` splits as
//!   `torch.tensor_split` does ([`tensor_split_block`]).
//! - [`runs::select`]: the byte runs of a rank's part of one tensor (a
//!   dim-0 block is one run; a dim-k block one run per outer index,
//!   coalesced), described as one strided group ([`Runs`]: first offset,
//!   run length, stride, count) and expanded on demand, so planning takes
//!   constant memory per tensor however many rows it has.
//! - [`Checkpoint`]: one file, an index, or a directory of shards; plans a
//!   rank's reads ([`LoadPlan`]) and performs them with positioned reads in
//!   parallel (rayon) into a fresh or caller-provided buffer, counting the
//!   bytes read; small dense runs can be read as covering spans and
//!   gathered ([`Checkpoint::with_read_gap`]).
//! - [`SavePlan`]: saving without gathering: every rank computes the same
//!   layout (byte-identical to the reference writer's) and writes its parts
//!   with positioned writes.
//!
//! ```
//! use tensorseal_parallel::{tensor_split_block, Plan, Rule};
//! let plan = Plan::from_json(r#"{"rules": [{"pattern": "*.q_proj.weight", "rule": {"shard": 0}}]}"#)?;
//! assert_eq!(plan.rule_for("model.layers.3.self_attn.q_proj.weight"), Rule::Shard(0));
//! assert_eq!(plan.rule_for("model.norm.weight"), Rule::Replicate);
//! // 10 rows over 4 ranks: 3, 3, 2, 2.
//! assert_eq!(tensor_split_block(10, 4, 1), (3, 6));
//! assert_eq!(tensor_split_block(10, 4, 3), (8, 10));
//! # Ok::<(), tensorseal_parallel::ParallelError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod load;
pub mod plan;
pub mod runs;
pub mod save;

pub use error::ParallelError;
pub use load::{Checkpoint, LoadPlan, TensorLoad};
pub use plan::{resolve, tensor_split_block, Assignment, Plan, Rule};
pub use runs::{select, Run, Runs, RunsIter, Selection};
pub use save::{full_specs, SavePlan, WriteRun};
