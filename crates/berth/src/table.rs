//! Docker-style output: plain aligned tables (columns separated by at least three spaces),
//! sizes, ages and short IDs.

pub fn print<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}   ", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Docker's size format: decimal units, three significant digits ("4.26MB", "512B"), as
/// `docker images` shows sizes.
pub fn human_size(n: u64) -> String {
    human_size_prec(n, 3)
}

/// Decimal units with `digits` significant digits (`docker system df` uses four: "16.43MB").
pub fn human_size_prec(n: u64, digits: usize) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    let s = if i == 0 {
        format!("{n}")
    } else {
        let int_digits = if v >= 100.0 {
            3
        } else if v >= 10.0 {
            2
        } else {
            1
        };
        format!("{v:.prec$}", prec = digits.saturating_sub(int_digits))
    };
    let t = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    format!("{t}{}", units[i])
}

/// "3 hours ago" from unix seconds.
pub fn ago(unix: i64) -> String {
    format!("{} ago", berth_runtime::state::human_duration(berth_runtime::state::unix_now() - unix))
}

/// An ID without `sha256:`, cut to 12 characters unless `no_trunc`.
pub fn trunc_id(id: &str, no_trunc: bool) -> String {
    let id = id.trim_start_matches("sha256:");
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size_prec(16_434_000, 4), "16.43MB");
        assert_eq!(human_size_prec(0, 4), "0B");
        assert_eq!(trunc_id("sha256:0123456789abcdef", false), "0123456789ab");
    }
}
