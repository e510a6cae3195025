//! How kubelet names cgroups: the kubepods root of each cgroup driver, the QoS tiers below it and
//! the pod directory of a UID. Pure naming, no file system; [`super::walk`] finds the roots and
//! [`super::CgroupDiscovery`] stats the candidates built here.

use std::path::{Path, PathBuf};

/// A pod's QoS class, as `status.qosClass` spells it. It picks the tier of the pod's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
    /// The class is not known (not reported yet, or a spelling this agent does not know):
    /// every tier is tried.
    Unknown,
}

impl Qos {
    /// The known classes, most common first: the order tried for [`Qos::Unknown`].
    pub const CLASSES: [Qos; 3] = [Qos::Burstable, Qos::BestEffort, Qos::Guaranteed];

    /// Parses `status.qosClass` (`Guaranteed`, `Burstable`, `BestEffort`); anything else, or no
    /// class at all, is [`Qos::Unknown`].
    pub fn from_class(class: Option<&str>) -> Qos {
        let class = class.unwrap_or_default();
        Qos::CLASSES
            .into_iter()
            .find(|q| q.as_str().eq_ignore_ascii_case(class))
            .unwrap_or(Qos::Unknown)
    }

    /// The Kubernetes spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
            Qos::Unknown => "Unknown",
        }
    }

    /// The classes to try, in order: this one first, then the others. A stated class is only a
    /// hint worth a few extra stats on a miss, so a pod whose class the API reported wrongly (or
    /// that changed with an in-place resize) is still found.
    pub(super) fn search_order(self) -> Vec<Qos> {
        let mut order = vec![self];
        order.extend(Qos::CLASSES.into_iter().filter(|q| *q != self));
        order.retain(|q| *q != Qos::Unknown);
        order
    }

    /// The tier's name below the kubepods root; `None` for Guaranteed pods, which sit directly
    /// under it.
    fn tier(self) -> Option<&'static str> {
        match self {
            Qos::Burstable => Some("burstable"),
            Qos::BestEffort => Some("besteffort"),
            Qos::Guaranteed | Qos::Unknown => None,
        }
    }
}

/// kubelet's cgroup driver, told apart by the kubepods root's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// Slices: `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice`.
    Systemd,
    /// Plain directories: `kubepods/burstable/pod<uid>`.
    Cgroupfs,
}

/// A kubepods root found on this node: the directory every pod cgroup of kubelet lives below.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubepodsRoot {
    pub path: PathBuf,
    pub driver: Driver,
    /// The slice name without `.slice` (`kubepods`, or `kubelet-kubepods` under a
    /// `kubelet.slice` cgroup root): systemd names every slice below with this prefix.
    stem: String,
}

impl KubepodsRoot {
    /// `path` as a kubepods root, if its last component is one: `kubepods` (cgroupfs),
    /// `kubepods.slice` or `<parent>-kubepods.slice` (systemd, with a `cgroupRoot` slice).
    pub fn recognise(path: &Path) -> Option<KubepodsRoot> {
        let name = path.file_name()?.to_str()?;
        let (driver, stem) = match name.strip_suffix(".slice") {
            Some(stem) if stem == "kubepods" || stem.ends_with("-kubepods") => {
                (Driver::Systemd, stem)
            }
            None if name == "kubepods" => (Driver::Cgroupfs, name),
            _ => return None,
        };
        Some(KubepodsRoot {
            path: path.to_path_buf(),
            driver,
            stem: stem.to_string(),
        })
    }

    /// Where kubelet puts the cgroup of the pod `uid` in tier `qos` (not Unknown).
    pub fn pod_dir(&self, uid: &str, qos: Qos) -> PathBuf {
        match (self.driver, qos.tier()) {
            (Driver::Cgroupfs, None) => self.path.join(format!("pod{uid}")),
            (Driver::Cgroupfs, Some(tier)) => self.path.join(tier).join(format!("pod{uid}")),
            (Driver::Systemd, tier) => {
                // '-' separates the levels of a slice name, so kubelet escapes the UID's dashes.
                let uid = uid.replace('-', "_");
                let parent = match tier {
                    None => self.stem.clone(),
                    Some(tier) => format!("{}-{tier}", self.stem),
                };
                let slice = format!("{parent}-pod{uid}.slice");
                match tier {
                    None => self.path.join(slice),
                    Some(_) => self.path.join(format!("{parent}.slice")).join(slice),
                }
            }
        }
    }
}

/// Whether `uid` can name a cgroup safely: Kubernetes UIDs are UUIDs, the local state file's
/// default is `<namespace>.<name>`. Refused: empty, `/`, `..` and anything else that could
/// leave the kubepods root or alias another pod's name.
pub(super) fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid != "."
        && uid != ".."
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes_parse_with_unknown_for_the_rest() {
        assert_eq!(Qos::from_class(Some("Burstable")), Qos::Burstable);
        assert_eq!(Qos::from_class(Some("BestEffort")), Qos::BestEffort);
        assert_eq!(Qos::from_class(Some("guaranteed")), Qos::Guaranteed);
        assert_eq!(Qos::from_class(Some("Platinum")), Qos::Unknown);
        assert_eq!(Qos::from_class(Some("")), Qos::Unknown);
        assert_eq!(Qos::from_class(None), Qos::Unknown);
        assert_eq!(Qos::Unknown.search_order(), Qos::CLASSES.to_vec());
        assert_eq!(
            Qos::Guaranteed.search_order(),
            [Qos::Guaranteed, Qos::Burstable, Qos::BestEffort]
        );
    }

    #[test]
    fn roots_are_recognised_by_name() {
        let driver = |p: &str| KubepodsRoot::recognise(Path::new(p)).map(|r| r.driver);
        assert_eq!(driver("/cg/kubepods.slice"), Some(Driver::Systemd));
        assert_eq!(
            driver("/cg/kubelet.slice/kubelet-kubepods.slice"),
            Some(Driver::Systemd)
        );
        assert_eq!(driver("/cg/x/kubepods"), Some(Driver::Cgroupfs));
        for not_root in [
            "/cg/kubepods-burstable.slice",
            "/cg/kubepodsx",
            "/cg/kubepods.scope",
            "/",
        ] {
            assert_eq!(driver(not_root), None, "{not_root}");
        }
    }

    #[test]
    fn uids_that_could_escape_the_root_are_refused() {
        assert!(valid_uid("3f1e6c2a-0b7d-4a51-9d0e-5c8f2b1a7e44"));
        assert!(valid_uid("shop.client"));
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(!valid_uid(bad), "{bad:?}");
        }
    }
}
