//! The tables of Solaris pmap's options (`-x`, `-S`, `-s`, `-L`, `-r`...):
//! columns of numbers or words per region, and their totals. Built by
//! `cmd::views::solaris`, printed by `render::solaris` and as JSON.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Num(u64),
    Text(String),
    /// Not applicable (e.g. Anon of a shared mapping without `-a`).
    Dash,
}

pub struct Table {
    pub columns: Vec<String>,
    /// Per row: start address, the cells of `columns`, mode, mapping.
    pub rows: Vec<TableRow>,
    /// Per column: the sum of its numbers, `None` for a column of words or
    /// of dashes only.
    pub totals: Vec<Option<u64>>,
}

pub struct TableRow {
    pub start: u64,
    pub cells: Vec<Cell>,
    pub mode: String,
    pub mapping: String,
}

impl Table {
    /// The table of `rows`, with each column's total.
    pub fn new(columns: Vec<String>, rows: Vec<TableRow>) -> Table {
        let totals = (0..columns.len())
            .map(|i| {
                let mut any = false;
                let mut sum = 0;
                for r in &rows {
                    match &r.cells[i] {
                        Cell::Num(n) => {
                            any = true;
                            sum += n;
                        }
                        Cell::Text(_) => return None,
                        Cell::Dash => {}
                    }
                }
                any.then_some(sum)
            })
            .collect();
        Table {
            columns,
            rows,
            totals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_numbers_skip_dashes_and_leave_words_out() {
        let row = |cells| TableRow {
            start: 0,
            cells,
            mode: String::new(),
            mapping: String::new(),
        };
        let t = Table::new(
            vec!["Kbytes".into(), "Anon".into(), "Pgsz".into(), "Swap".into()],
            vec![
                row(vec![
                    Cell::Num(4),
                    Cell::Dash,
                    Cell::Text("4K".into()),
                    Cell::Dash,
                ]),
                row(vec![
                    Cell::Num(8),
                    Cell::Num(8),
                    Cell::Text("2M".into()),
                    Cell::Dash,
                ]),
            ],
        );
        assert_eq!(t.totals, vec![Some(12), Some(8), None, None]);
    }
}
