//! The command-line reading the bench programs share (`--name value`). Each program includes this
//! file as a module and uses what it needs of it.
#![allow(dead_code)]

/// The value after `name`, if it is given.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// The value after `name`, which must be given.
pub fn required(name: &str) -> anyhow::Result<String> {
    arg(name).ok_or_else(|| anyhow::anyhow!("{name} is required"))
}
