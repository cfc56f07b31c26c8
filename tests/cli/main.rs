//! The `transfer-studio` binary as a user runs it: every command, and what a killed run or a
//! full disk leaves behind. One test binary.

#[path = "../common/mod.rs"]
mod common;

mod commands;
mod crash;
mod generic_path;
