//! The non-tool catalogue: resources, prompts and argument completion.

pub mod completion;
pub mod prompts;
pub mod resources;
