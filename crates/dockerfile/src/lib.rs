//! Dockerfile frontend: parsing, variable expansion and `.dockerignore` matching.
//!
//! The pure, kernel-free half of `berth build`: it turns a Dockerfile into typed
//! instructions and a build plan, and answers "which context files are ignored". Every
//! module mirrors a piece of Docker (BuildKit's `frontend/dockerfile` packages and
//! `moby/patternmatcher`), with the same accepted syntax and the same error wording:
//!
//! - [`parser`]: text → [`Dockerfile`] (directives, continuations, heredocs, flags,
//!   JSON/shell forms) with typed [`Command`]s ([`instruction`], [`mount`]).
//! - [`expand`]: the shell word lexer (`$v`, `${v:-w}`, `${v#p}`, quotes, word splitting),
//!   which instruction arguments Docker expands, and the variables a word refers to.
//! - [`stages`]: stages, meta/predefined/stage args, `FROM`/`COPY --from` resolution,
//!   target selection, dependency closure and build order.
//! - [`ignore`]: `.dockerignore` reading and matching, and which ignore file applies.
//!
//! ```
//! let df = berth_dockerfile::parse("FROM alpine AS base\nRUN echo hi\n").unwrap();
//! assert_eq!(df.instructions.len(), 2);
//! ```

pub mod expand;
pub mod ignore;
pub mod instruction;
pub mod mount;
pub mod parser;
pub mod stages;

pub use expand::{expand_instruction, referenced_by, Env, ExpandError, Lexer, Vars};
pub use ignore::PatternMatcher;
pub use instruction::Command;
pub use parser::{parse, Dockerfile, Instruction, ParseError};
pub use stages::{plan, split_stages, BuildPlan, StageError, Stages};
