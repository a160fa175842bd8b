//! `strata container create|mount|umount|rm|list`.

use serde_json::json;

use super::{Ctx, name};
use crate::args::ContainerCommand;
use crate::output::{print_json, print_table};

pub fn run(ctx: &Ctx, c: ContainerCommand) -> anyhow::Result<()> {
    match c {
        ContainerCommand::Create { image, name: n } => {
            let (image, n) = (name(&image)?, name(&n)?);
            let store = ctx.open()?;
            let rec = store.container_create(&image, &n)?;
            if ctx.json {
                return print_json(&json!({ "container": rec.name, "image": rec.image, "layers": rec.layers }));
            }
            println!("{}", rec.name);
        }
        ContainerCommand::Mount { name: n } => {
            let n = name(&n)?;
            let store = ctx.open()?;
            let merged = store.container_mount(&n)?;
            if ctx.json {
                return print_json(&json!({ "container": n, "merged": merged }));
            }
            println!("{}", merged.display());
        }
        ContainerCommand::Umount { name: n } => {
            let n = name(&n)?;
            ctx.open()?.container_umount(&n)?;
            if ctx.json {
                return print_json(&json!({ "container": n }));
            }
        }
        ContainerCommand::Rm { name: n } => {
            let n = name(&n)?;
            ctx.open()?.container_rm(&n)?;
            if ctx.json {
                return print_json(&json!({ "container": n }));
            }
        }
        ContainerCommand::List => {
            let store = ctx.open()?;
            let cs = store.containers()?;
            if ctx.json {
                let list: Vec<_> = cs
                    .iter()
                    .map(|c| {
                        let mounted = strata_store::container::is_mounted(&store.container_dirs(&c.name).merged);
                        json!({"name": c.name, "image": c.image, "mounted": mounted})
                    })
                    .collect();
                return print_json(&json!({ "containers": list }));
            }
            let rows: Vec<Vec<String>> = cs
                .iter()
                .map(|c| {
                    let mounted = strata_store::container::is_mounted(&store.container_dirs(&c.name).merged);
                    vec![c.name.to_string(), c.image.to_string(), if mounted { "mounted" } else { "" }.to_owned()]
                })
                .collect();
            print_table(&["NAME", "IMAGE", "STATE"], &rows);
        }
    }
    Ok(())
}
