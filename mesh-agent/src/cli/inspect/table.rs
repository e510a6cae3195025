//! Aligned text tables, the way kubectl prints them: upper-case headers, columns padded to
//! their widest cell and three spaces apart, no borders. Widths count characters, not bytes.

/// A table under construction.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_uppercase()).collect()],
        }
    }

    /// Adds a row; missing cells are blank, extra cells are kept (and widen the table).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    /// The table, one line per row, each ending with a newline; no trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, width) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                line.push_str(cell);
                let pad = width - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad + 3));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned, for one object (`status`, `explain`).
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let pad = width - key.chars().count();
        out.push_str(&format!("{key}:{}{value}\n", " ".repeat(pad + 2)));
    }
    out
}

/// `yes` / `no`.
pub fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A list as one cell: comma-separated, `-` when empty.
pub fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "-".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut t = Table::new(&["name", "node", "ips"]);
        t.row(["shop/api-a", "a", "10.244.1.4"]);
        t.row(["ns/ü", "node-b"]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME         NODE     IPS");
        assert_eq!(lines[1], "shop/api-a   a        10.244.1.4");
        // Multi-byte characters count once; a missing last cell leaves no trailing blanks.
        assert_eq!(lines[2], "ns/ü         node-b");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn fields_and_cells() {
        let text = fields(&[("node", "a".into()), ("uptime", "5s".into())]);
        assert_eq!(text, "node:    a\nuptime:  5s\n");
        assert_eq!(list::<String>(&[]), "-");
        assert_eq!(list(&["a", "b"]), "a,b");
        assert_eq!(yes_no(false), "no");
    }
}
