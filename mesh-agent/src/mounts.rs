//! The mount table as `/proc/self/mountinfo` lists it. The agent needs it to find cgroup v2
//! (`/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on hybrid ones) and bpffs.

use std::io;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The mounted directory of the file system (not `/` for a bind mount of a sub-tree).
    pub root: String,
    pub mount_point: PathBuf,
    pub fstype: String,
}

/// Parses a mountinfo text: `<id> <parent> <dev> <root> <mount point> <options> [optional...]
/// - <fstype> <source> <super options>`. Malformed lines are skipped.
pub fn parse(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let mut fields = mount.split(' ').skip(3);
            let root = unescape(fields.next()?);
            let mount_point = PathBuf::from(unescape(fields.next()?));
            let fstype = fs.split(' ').next()?.to_string();
            Some(Mount {
                root,
                mount_point,
                fstype,
            })
        })
        .collect()
}

/// This process's mount table.
pub fn read() -> io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The first cgroup v2 mount.
pub fn cgroup2() -> io::Result<Mount> {
    read()?
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup2 file system is mounted (weft needs cgroup v2)",
            )
        })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
50 25 0:40 / /sys/fs/bpf rw - bpf bpf rw
51 25 0:41 /sub /mnt/with\\040space rw - ext4 /dev/vda rw
";

    #[test]
    fn finds_file_systems_and_decodes_escapes() {
        let mounts = parse(HYBRID);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[1].fstype, "cgroup2");
        assert_eq!(
            mounts[1].mount_point,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert_eq!(mounts[2].fstype, "bpf");
        assert_eq!(mounts[3].root, "/sub");
        assert_eq!(mounts[3].mount_point, PathBuf::from("/mnt/with space"));
    }

    #[test]
    fn malformed_lines_are_skipped_and_lone_backslashes_kept() {
        assert!(parse("garbage\n1 2 3\n").is_empty());
        assert_eq!(unescape("/trailing\\"), "/trailing\\");
        assert_eq!(unescape("/a\\12"), "/a\\12");
    }
}
