//! `odi init`: a new network repository, ready for its first catalog. Root keys, a maintainer
//! key delegated `catalogs/` and `directories/`, a snapshot key for the network's CI; the
//! first root signed; the CI workflows, a README and a `.gitignore`; one git commit. Secret
//! keys go to the key folder, never into the repository.

use std::path::{Path, PathBuf};

use odi_network::raw::{Delegation, RoleKeys, RootFile, RootKey, Timestamp};

use super::{catalog::is_inside, io_err, keys, CmdError};

/// What `odi init` made.
#[derive(Debug)]
pub struct Initialised {
    /// The repository.
    pub repo: PathBuf,
    /// Secret keys written, by role.
    pub keys: Vec<(String, PathBuf)>,
    /// The first commit.
    pub commit: String,
}

const README: &str = "# An ODI network\n\n\
This repository is the network: catalogs of artifacts (`catalogs/`), directory servers\n\
(`directories/`) and relay offers (`relays/`), each file signed, under the root of trust in\n\
`trust/roots/`. `trust/snapshot.toml` lists every signed document; the network's CI re-signs\n\
it after each merge and on a schedule.\n\n\
- Check everything as an agent would: `odi validate .`\n\
- Publish: `odi catalog new NAME --origin URL --key maintainer.key`, then\n  \
  `odi catalog add NAME FILES... --key maintainer.key` and `odi snapshot --key snapshot.key`.\n\
- Relay operators add `relays/<name>.toml`, signed with their own key, and ask for a\n  \
  delegation of that file in a new root version (`odi root new`, `odi root sign`).\n";

const VALIDATE_WORKFLOW: &str = "# Pull requests: everything an agent checks, except the snapshot, which the\n\
# snapshot workflow writes after the merge. Needs `odi` on the runner.\n\
name: validate\non: [pull_request]\njobs:\n  validate:\n    runs-on: ubuntu-latest\n    steps:\n\
      - uses: actions/checkout@v4\n        with: { fetch-depth: 0 }\n\
      - run: odi validate . --commit HEAD --since \"origin/${{ github.base_ref }}\" --without-snapshot\n";

const SNAPSHOT_WORKFLOW: &str = "# After every merge and every 12 hours: list and re-sign every document, so the\n\
# snapshot (valid 3 days) never expires while the network is healthy. SNAPSHOT_KEY holds the\n\
# snapshot key's secret file. Needs `odi` on the runner.\n\
name: snapshot\non:\n  push: { branches: [main] }\n  schedule: [{ cron: \"17 */12 * * *\" }]\n\
permissions: { contents: write }\njobs:\n  snapshot:\n    runs-on: ubuntu-latest\n    steps:\n\
      - uses: actions/checkout@v4\n\
      - env: { SNAPSHOT_KEY: \"${{ secrets.SNAPSHOT_KEY }}\" }\n        run: |\n\
          umask 077; printf '%s\\n' \"$SNAPSHOT_KEY\" > \"$RUNNER_TEMP/s.key\"\n\
          odi snapshot --key \"$RUNNER_TEMP/s.key\" --expires 3d . && rm -f \"$RUNNER_TEMP/s.key\"\n\
          odi validate .\n\
          git config user.name snapshot-bot && git config user.email snapshot-bot@users.noreply.invalid\n\
          git add trust/ && git commit -m 'snapshot: refresh' && git push || echo unchanged\n";

/// `odi init DIR --keys KEYDIR`: `root_keys` root keys with `threshold` of them required.
pub fn init(
    dir: &Path,
    key_dir: &Path,
    root_keys: usize,
    threshold: usize,
) -> Result<Initialised, CmdError> {
    if is_inside(key_dir, dir) {
        return Err(CmdError::Usage(format!(
            "the key folder {} is inside the repository {}: secret keys must never be committed; choose a folder outside it",
            key_dir.display(),
            dir.display()
        )));
    }
    if root_keys == 0 || threshold == 0 || threshold > root_keys {
        return Err(CmdError::Usage(format!(
            "--threshold {threshold} must be between 1 and --root-keys ({root_keys})"
        )));
    }
    if dir.exists() && std::fs::read_dir(dir).map_err(io_err(dir))?.next().is_some() {
        return Err(CmdError::Usage(format!("{} exists and is not empty", dir.display())));
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    std::fs::create_dir_all(key_dir).map_err(io_err(key_dir))?;
    let mut written = Vec::new();
    let mut gen = |name: &str| -> Result<String, CmdError> {
        let (sk, _, public) = keys::keygen(&key_dir.join(name))?;
        written.push((name.to_owned(), sk));
        Ok(public)
    };
    let roots: Vec<RootKey> = (1..=root_keys)
        .map(|i| Ok(RootKey { name: format!("root-{i}"), public: gen(&format!("root-{i}"))? }))
        .collect::<Result<_, CmdError>>()?;
    let maintainer = gen("maintainer")?;
    let snapshot = gen("snapshot")?;
    let root = RootFile {
        serial: 1,
        expires: Timestamp(Timestamp::now().0 + time::Duration::days(365)),
        threshold: threshold as u32,
        keys: roots.clone(),
        delegations: vec![Delegation {
            name: "maintainers".into(),
            public: Some(maintainer),
            paths: vec!["catalogs/".into(), "directories/".into()],
            ..Default::default()
        }],
        snapshot: Some(RoleKeys {
            threshold: 1,
            keys: vec![RootKey { name: "snapshot".into(), public: snapshot }],
        }),
    };
    let mut text = String::from("# Root version 1 of this network, written by `odi init`. A new version needs a\n# threshold of these keys and of its own (`odi root new`, `odi root sign`).\n");
    text.push_str(&toml::to_string(&root).map_err(|e| CmdError::Usage(e.to_string()))?);
    let roots_dir = dir.join("trust/roots");
    std::fs::create_dir_all(&roots_dir).map_err(io_err(&roots_dir))?;
    let root_path = roots_dir.join("1.toml");
    std::fs::write(&root_path, &text).map_err(io_err(&root_path))?;
    for k in &roots {
        super::trust::root_sign(dir, &key_dir.join(format!("{}.key", k.name)))?;
    }
    for sub in ["catalogs", "directories", "relays"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        // Empty folders are not kept by git.
        std::fs::write(
            d.join("README.md"),
            format!("# {sub}\n\nSigned `{sub}` files of this network.\n"),
        )
        .map_err(io_err(&d))?;
    }
    let wf = dir.join(".github/workflows");
    std::fs::create_dir_all(&wf).map_err(io_err(&wf))?;
    for (name, body) in [("validate.yml", VALIDATE_WORKFLOW), ("snapshot.yml", SNAPSHOT_WORKFLOW)] {
        std::fs::write(wf.join(name), body).map_err(io_err(&wf))?;
    }
    std::fs::write(dir.join("README.md"), README).map_err(io_err(dir))?;
    std::fs::write(dir.join(".gitignore"), "# Secret keys never belong here.\n*.key\n")
        .map_err(io_err(dir))?;
    super::trust::snapshot(
        dir,
        &key_dir.join("snapshot.key"),
        time::Duration::days(7),
        false,
        &[],
    )?;
    let commit = odi_network::builder::commit_all(dir, "A new ODI network (odi init)")
        .map_err(|e| CmdError::Usage(format!("git: {e}")))?;
    Ok(Initialised { repo: dir.to_owned(), keys: written, commit: commit.to_string() })
}
