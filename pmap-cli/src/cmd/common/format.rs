//! The table format the option letters ask for, the same in every command
//! line: none the default, `-x` extended, `-X` more extended, `-XX` (or
//! more) everything, `-d` device. (An rc file's format is `Format::Rc`.)

use crate::render::Format;

/// More than one of `-x`, `-X`, `-d` was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict;

/// The format of `-x` (`x`), `-X` given `big_x` times and `-d` (`d`).
pub fn from_letters(x: bool, big_x: u32, d: bool) -> Result<Format, Conflict> {
    match (x, big_x, d) {
        (false, 0, false) => Ok(Format::Default),
        (true, 0, false) => Ok(Format::Extended),
        (false, 0, true) => Ok(Format::Device),
        (false, 1, false) => Ok(Format::MoreExtended),
        (false, _, false) => Ok(Format::All),
        _ => Err(Conflict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters() {
        assert_eq!(from_letters(false, 0, false), Ok(Format::Default));
        assert_eq!(from_letters(true, 0, false), Ok(Format::Extended));
        assert_eq!(from_letters(false, 0, true), Ok(Format::Device));
        assert_eq!(from_letters(false, 1, false), Ok(Format::MoreExtended));
        assert_eq!(from_letters(false, 3, false), Ok(Format::All));
        assert_eq!(from_letters(true, 1, false), Err(Conflict));
        assert_eq!(from_letters(true, 0, true), Err(Conflict));
    }
}
