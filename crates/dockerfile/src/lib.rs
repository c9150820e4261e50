//! Dockerfile frontend: parsing, variable expansion and `.dockerignore` matching.

pub mod expand;
pub mod instruction;
pub mod mount;
pub mod parser;

pub use instruction::Command;
pub use parser::{parse, Dockerfile, Instruction, ParseError};
