//! Label and field selectors: the Kubernetes grammar, parsing and matching.

pub mod fields;
pub mod labels;

use std::fmt;

/// Writes `items` separated by commas: the text form of both kinds of selector.
fn write_joined<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}
