//! `odi keygen` and `odi sign`: minisign-compatible keys and signatures, so a maintainer can
//! use either this tool or the standard `minisign` and the files interoperate.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use odi_network::signature::{generate_key, SecretKey};

use super::{io_err, CmdError};

/// Writes `<name>.key` (mode 0600) and `<name>.pub`; refuses to overwrite either.
pub fn keygen(name: &Path) -> Result<(PathBuf, PathBuf, String), CmdError> {
    let key = generate_key()?;
    let sk_path = name.with_extension("key");
    let pk_path = name.with_extension("pub");
    for p in [&sk_path, &pk_path] {
        if p.exists() {
            return Err(CmdError::Usage(format!("{} exists; not overwriting a key", p.display())));
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&sk_path).map_err(io_err(&sk_path))?;
    f.write_all(key.secret_file.as_bytes()).map_err(io_err(&sk_path))?;
    std::fs::write(&pk_path, key.public_file.as_bytes()).map_err(io_err(&pk_path))?;
    Ok((sk_path, pk_path, key.public))
}

/// Signs each file, writing `<file>.minisig` beside it.
pub fn sign(key_path: &Path, files: &[PathBuf]) -> Result<Vec<PathBuf>, CmdError> {
    let text = std::fs::read_to_string(key_path).map_err(io_err(key_path))?;
    let key = SecretKey::parse(&text, std::env::var("ODI_KEY_PASSWORD").ok())?;
    let mut written = Vec::new();
    for file in files {
        let data = std::fs::read(file).map_err(io_err(file))?;
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let sig = key.sign(&data, &format!("timestamp:{ts}\tfile:{name}"))?;
        let mut out = file.clone().into_os_string();
        out.push(".minisig");
        let out = PathBuf::from(out);
        std::fs::write(&out, sig).map_err(io_err(&out))?;
        written.push(out);
    }
    Ok(written)
}
