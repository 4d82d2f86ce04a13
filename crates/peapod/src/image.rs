//! `peapod image import|ls|pull`: the local image store, without a running `peapod up`.

use anyhow::Context;

use crate::cli::ImageCommand;

pub async fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Import { state, file } => {
            let store = open(&state.state_dir)?;
            let images = tokio::task::spawn_blocking(move || store.import(&file))
                .await
                .context("import task")?
                .context("importing")?;
            for image in images {
                println!("imported {} {}", short_id(&image.id), names(&image));
            }
        }
        ImageCommand::Ls { state } => {
            let store = open(&state.state_dir)?;
            let mut images = store.list().context("listing images")?;
            images.sort_by_key(names);
            println!("{:<60} {:<14} {:>10}", "IMAGE", "ID", "SIZE");
            for image in images {
                let name = if image.repo_tags.is_empty() {
                    "<none>".to_string()
                } else {
                    image.repo_tags.join(",")
                };
                println!(
                    "{:<60} {:<14} {:>10}",
                    name,
                    short_id(&image.id),
                    human_size(image.size_bytes)
                );
            }
        }
        ImageCommand::Pull { state, reference } => {
            let store = open(&state.state_dir)?;
            let bar = progress_bar();
            let progress = |p: images::PullProgress| match p {
                images::PullProgress::Resolving => {
                    bar.set_message(format!("resolving {reference}"))
                }
                images::PullProgress::Layer {
                    digest,
                    downloaded,
                    total,
                } => {
                    bar.set_length(total);
                    bar.set_position(downloaded);
                    bar.set_message(digest.chars().take(19).collect::<String>());
                }
                images::PullProgress::Done => bar.finish_and_clear(),
            };
            let image = store
                .pull(&reference, Some(&progress))
                .await
                .with_context(|| format!("pulling {reference}"))?;
            bar.finish_and_clear();
            println!("pulled {} {}", short_id(&image.id), names(&image));
        }
    }
    Ok(())
}

fn open(state_dir: &std::path::Path) -> anyhow::Result<images::ImageStore> {
    let root = runtime::image_store_dir(state_dir);
    images::ImageStore::open(&root)
        .with_context(|| format!("opening image store {}", root.display()))
}

/// A progress bar on a terminal; hidden when stderr is not one (scripts, CI logs).
fn progress_bar() -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:20} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

fn names(image: &images::Image) -> String {
    image.repo_tags.join(",")
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}
