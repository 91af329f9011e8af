//! What the ACME task keeps in `<data dir>/acme` (the directory 0700, every file 0600): the
//! account (`account.json`: the directory URL and instant-acme's credentials, which hold the
//! account's private key) and the served certificate (`certificate.pem`: the chain, leaf first,
//! then its private key, in one file so that one rename replaces both). Files are written to
//! a temporary name and renamed, so a crash leaves the old file or the new one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::AcmeError;

const ACCOUNT: &str = "account.json";
const CERTIFICATE: &str = "certificate.pem";

/// The ACME folder of the data directory.
#[derive(Debug, Clone)]
pub struct AcmeFiles {
    dir: PathBuf,
}

impl AcmeFiles {
    /// Makes `<data_dir>/acme` (0700) when missing and tightens it when it is not.
    pub fn open(data_dir: &Path) -> Result<AcmeFiles, AcmeError> {
        let dir = data_dir.join("acme");
        fs::create_dir_all(&dir).map_err(|e| failed(&dir, e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| failed(&dir, e))?;
        Ok(AcmeFiles { dir })
    }

    pub fn account(&self) -> Result<Option<Vec<u8>>, AcmeError> {
        self.read(ACCOUNT)
    }

    pub fn save_account(&self, json: &[u8]) -> Result<(), AcmeError> {
        self.write(ACCOUNT, json)
    }

    pub fn certificate(&self) -> Result<Option<Vec<u8>>, AcmeError> {
        self.read(CERTIFICATE)
    }

    pub fn save_certificate(&self, pem: &[u8]) -> Result<(), AcmeError> {
        self.write(CERTIFICATE, pem)
    }

    pub fn certificate_path(&self) -> PathBuf {
        self.dir.join(CERTIFICATE)
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, AcmeError> {
        let path = self.dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed(&path, e)),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), AcmeError> {
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let written = (|| {
            let _ = fs::remove_file(&temporary);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temporary, &path)
        })();
        written.map_err(|e| failed(&path, e))
    }
}

fn failed(path: &Path, source: std::io::Error) -> AcmeError {
    AcmeError::Files {
        path: path.to_path_buf(),
        cause: source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_is_0700_and_files_0600_and_rewritten_whole() {
        let data = tempfile::tempdir().unwrap();
        let files = AcmeFiles::open(data.path()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data.path().join("acme")), 0o700);
        assert_eq!(files.certificate().unwrap(), None);
        files.save_certificate(b"one").unwrap();
        files.save_certificate(b"two").unwrap();
        files.save_account(b"{}").unwrap();
        assert_eq!(files.certificate().unwrap().unwrap(), b"two");
        assert_eq!(mode(&files.certificate_path()), 0o600);
        assert_eq!(mode(&data.path().join("acme/account.json")), 0o600);
        // A folder made loosely before is tightened.
        fs::set_permissions(data.path().join("acme"), fs::Permissions::from_mode(0o755)).unwrap();
        AcmeFiles::open(data.path()).unwrap();
        assert_eq!(mode(&data.path().join("acme")), 0o700);
    }
}
