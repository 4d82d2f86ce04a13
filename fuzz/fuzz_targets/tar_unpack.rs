//! Image layers (tar streams) unpacked into a fresh directory without privileges; whatever the
//! archive holds, nothing may appear outside the layer directory.
#![no_main]

use std::io::Cursor;

use images::Privileges;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(root) = tempfile::tempdir() else {
        return;
    };
    let layer = root.path().join("layer");
    if std::fs::create_dir(&layer).is_err() {
        return;
    }
    let privs = Privileges {
        chown: false,
        mknod: false,
    };
    let _ = images::unpack(
        Cursor::new(data),
        &layer,
        privs,
        &images::UnpackLimits::default(),
    );
    let outside: Vec<_> = std::fs::read_dir(root.path())
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        outside,
        vec![std::ffi::OsString::from("layer")],
        "entry outside the layer"
    );
    // Read-only directories from the archive must not stop the cleanup.
    make_writable(&layer);
});

fn make_writable(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}
