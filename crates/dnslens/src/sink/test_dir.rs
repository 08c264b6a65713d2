//! A directory of a test's own under the temp dir, emptied when made and removed when dropped.

use std::fs;
use std::path::PathBuf;

pub struct Dir(pub PathBuf);

impl Dir {
    /// `dnslens-<name>-<pid>`: `name` unique among the tests.
    pub fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("dnslens-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    /// The files of the directory: name -> content.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, fs::read_to_string(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
