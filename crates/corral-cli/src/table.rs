//! Aligned text tables for stdout: columns padded to their widest cell, two spaces apart,
//! no trailing spaces.

pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line += cell;
            if c + 1 < row.len() {
                line += &" ".repeat(widths[c] - cell.chars().count() + 2);
            }
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}
