pub mod engine;
pub mod registry;
