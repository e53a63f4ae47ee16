//! The list syntax (`0-3,8,10-11`) shared by the kernel's CPU lists (`cpuset.cpus`, sysfs
//! topology) and corral's core lists (`VISIBLE_CORES`, a lease's cores in records and
//! tickets): one reader of its ranges and one writer. What a number may be is the caller's:
//! a CPU list is the kernel's text ([`parse_cpu_list`]), a core list a user's value with its
//! own errors (`core_set::parse_core_list`).

/// Linux's largest CPU count (`NR_CPUS` at most 8192); a list naming more is not a CPU list.
const CPUS_MAX: usize = 8192;

/// The inclusive ranges of `text` in the order written (`4` is `(4, 4)`), each bound read by
/// `index`, which says why it refuses one; a range that runs backwards is refused here.
/// Nothing is expanded, so a huge range costs nothing to read.
pub(crate) fn ranges(text: &str, index: impl Fn(&str) -> Result<usize, String>) -> Result<Vec<(usize, usize)>, String> {
    text.split(',')
        .map(|part| {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (index(lo.trim())?, index(hi.trim())?),
                None => {
                    let one = index(part.trim())?;
                    (one, one)
                }
            };
            if lo > hi {
                return Err(format!("range {lo}-{hi} runs backwards"));
            }
            Ok((lo, hi))
        })
        .collect()
}

/// Writes inclusive ranges in the list syntax: `0-3,8`.
pub(crate) fn format_ranges(ranges: impl IntoIterator<Item = (usize, usize)>) -> String {
    let parts: Vec<String> =
        ranges.into_iter().map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect();
    parts.join(",")
}

/// Parses the kernel's CPU list format (`0-3,8,10-11`; empty for none); `None` for anything
/// else, including lists that name more CPUs than a kernel can have (checked before anything
/// is expanded).
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let cpu = |s: &str| s.parse::<usize>().ok().filter(|&c| c < CPUS_MAX).ok_or_else(String::new);
    let ranges = ranges(text, cpu).ok()?;
    if ranges.iter().map(|(lo, hi)| hi - lo + 1).sum::<usize>() > CPUS_MAX {
        return None;
    }
    Some(ranges.into_iter().flat_map(|(lo, hi)| lo..=hi).collect())
}

/// Formats ascending CPUs compactly in the kernel's list format (`0-3,8`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &cpu in cpus {
        match runs.last_mut() {
            Some((_, hi)) if cpu == *hi + 1 => *hi = cpu,
            _ => runs.push((cpu, cpu)),
        }
    }
    format_ranges(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_and_write_the_kernels_format() {
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list("0-4000000000"), None, "refused before anything is expanded");
        assert_eq!(parse_cpu_list("0-8000,0-8000"), None, "more CPUs than a kernel has");
        assert_eq!(parse_cpu_list("3-1"), None);
    }
}
