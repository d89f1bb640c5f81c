//! `kolla-oci rmi IMAGE…`: remove names from the store (podman's `rmi`). The blobs stay until `gc`
//! frees what no name reaches any more, so that a build running meanwhile never loses a layer.

use std::process::ExitCode;

/// Options of `kolla-oci rmi`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The images: tags (`:latest` when none is given) or digests (every tag of that image).
    #[arg(required = true)]
    pub images: Vec<String>,
    /// An image that is not in the store is no error.
    #[arg(short = 'i', long)]
    pub ignore: bool,
}

/// Untag each image, printing `Untagged: NAME` as podman does; exit 1 if one was not in the store.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let mut missing = false;
    for name in &args.images {
        let Some(found) = super::find_image(&store, name)? else {
            if !args.ignore {
                eprintln!("error: {}", super::not_known(ctx, name));
                missing = true;
            }
            continue;
        };
        // A digest names every tag of the image; a name only itself.
        let tags: Vec<String> = if found.by_digest {
            let digest = store.resolve(&found.tag)?.map(|d| d.digest);
            store.tags()?.into_iter().filter(|(_, d)| Some(d.digest) == digest).map(|(t, _)| t).collect()
        } else {
            vec![found.tag]
        };
        for t in tags {
            if store.untag(&t)? {
                println!("Untagged: {t}");
            }
        }
    }
    if !missing {
        tracing::info!("`kolla-oci gc` frees the blobs and layers no tag reaches any more");
    }
    Ok(if missing { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
