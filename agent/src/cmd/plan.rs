//! `odi plan`: what a relay or directory would hold at a commit, against its quota, and with
//! `--base`, what it would download and delete if that commit were applied.

use odi_network::assign::{assign, Extras};
use odi_network::plan::{diff, plan, NodePlan};
use odi_network::units::ByteSize;

use super::validate::load_at;
use super::CmdError;

/// Options of `odi plan`.
#[derive(Debug, Clone, Default)]
pub struct PlanArgs {
    /// Network repository: its work tree is read, or its git objects when a commit is given.
    pub path: std::path::PathBuf,
    /// Relay or directory to plan, by its name in the network; unknown names are an error.
    pub node: String,
    /// Commit to plan (work tree when absent).
    pub commit: Option<String>,
    /// Commit to compare against.
    pub base: Option<String>,
    /// `--pin` values: base64 keys or `.pub` files; none trusts the lowest root version found.
    pub pins: Vec<String>,
    /// Print JSON.
    pub json: bool,
    /// List every artifact.
    pub verbose: bool,
}

/// Computes the plan of one node.
pub fn node_plan(
    path: &std::path::Path,
    rev: Option<&str>,
    pins: &[String],
    node: &str,
) -> Result<NodePlan, CmdError> {
    let network = load_at(path, rev, pins)?;
    let assignment = assign(&network, &Extras::new());
    Ok(plan(&network, &assignment, node)?)
}

/// Runs `odi plan`.
pub fn run(args: &PlanArgs) -> Result<(), CmdError> {
    let after = node_plan(&args.path, args.commit.as_deref(), &args.pins, &args.node)?;
    let change = match &args.base {
        Some(base) => {
            Some(diff(&node_plan(&args.path, Some(base), &args.pins, &args.node)?, &after))
        }
        None => None,
    };
    if args.json {
        let out = serde_json::json!({ "plan": after, "change": change });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{} `{}`: holds {} artifacts, {}",
        after.role,
        after.node,
        after.holds.len(),
        ByteSize(after.total_bytes)
    );
    if let Some(q) = after.quota {
        let pct = if q == 0 { 0.0 } else { after.total_bytes as f64 * 100.0 / q as f64 };
        println!("quota {} ({pct:.1}% used)", ByteSize(q));
    }
    if after.unplaced > 0 {
        println!(
            "{} artifacts have no relay with room; the directory serves them itself",
            after.unplaced
        );
    }
    if !after.links.is_empty() {
        println!("links: {}", after.links.join(", "));
    }
    if !after.references.is_empty() {
        println!("references: {}", after.references.join(", "));
    }
    if args.verbose {
        for h in &after.holds {
            println!("  {}/{} {}", h.catalog, h.path, ByteSize(h.size));
        }
    }
    if let Some(d) = change {
        println!(
            "change: download {} ({}), delete {} ({}), keep {}",
            d.download.len(),
            ByteSize(d.download.iter().map(|h| h.size).sum()),
            d.delete.len(),
            ByteSize(d.delete.iter().map(|h| h.size).sum()),
            d.keep
        );
        for h in &d.download {
            println!("  + {}/{} {}", h.catalog, h.path, ByteSize(h.size));
        }
        for h in &d.delete {
            println!("  - {}/{} {}", h.catalog, h.path, ByteSize(h.size));
        }
    }
    Ok(())
}
