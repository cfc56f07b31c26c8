//! A restricted pickle reader: it builds plain data from the opcode stream and never calls
//! anything from the file. Only the globals a PyTorch state dict needs are accepted; any other
//! global (`os.system`, `builtins.eval`, …) is rejected by name the moment it is seen.

mod machine;
#[cfg(test)]
mod tests;
pub mod value;

pub use machine::read_pickle;
pub use value::*;
