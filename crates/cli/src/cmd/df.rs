//! `strata df`.

use super::Ctx;
use crate::output::{human_bytes, print_json};

pub fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let store = ctx.open()?;
    let u = store.df()?;
    if ctx.json {
        return print_json(&u);
    }
    let saved = u.logical_bytes.saturating_sub(u.physical_bytes);
    println!("images      {}", u.images);
    println!("layers      {}", u.layers);
    println!("containers  {}", u.containers);
    println!("chunks      {} (index {})", u.chunks, human_bytes(u.index_bytes));
    println!("logical     {}", human_bytes(u.logical_bytes));
    println!(
        "physical    {}{}",
        human_bytes(u.physical_bytes),
        if u.fiemap { String::new() } else { " (no FIEMAP on this filesystem: sharing not measured)".into() }
    );
    if u.logical_bytes > 0 {
        println!("saved       {} ({:.1}%)", human_bytes(saved), 100.0 * saved as f64 / u.logical_bytes as f64);
    }
    Ok(())
}
