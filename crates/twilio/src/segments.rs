//! SMS segment counting: whether a text fits GSM-7 (GSM 03.38 basic set, extension characters
//! cost two septets) or needs UCS-2 (UTF-16 code units), and how many segments it is billed as.
//!
//! One character outside GSM-7 (an emoji, a curly quote) switches the whole message to UCS-2.
//! In a concatenated message each segment loses room to its header (160 → 153 septets, 70 → 67
//! code units), and a character is never split across segments: an extension character's escape
//! pair or an emoji's surrogate pair that does not fit moves whole to the next segment, as
//! Twilio's message-segment-calculator does.

/// How a message is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The GSM 03.38 7-bit alphabet with its extension table.
    Gsm7,
    /// UCS-2 / UTF-16: anything else.
    Ucs2,
}

impl Encoding {
    /// Units (septets or UTF-16 code units) in a message that is one segment.
    pub fn single_segment_units(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }

    /// Units per segment of a concatenated (multi-segment) message.
    pub fn multi_segment_units(self) -> usize {
        match self {
            Encoding::Gsm7 => 153,
            Encoding::Ucs2 => 67,
        }
    }
}

/// The segment count of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentCount {
    pub encoding: Encoding,
    /// Septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2.
    pub units: usize,
    /// Segments billed; 0 for an empty text.
    pub segments: usize,
}

/// GSM 03.38 basic character set, in table order (0x1B, the escape, is not a character).
const GSM7_BASIC: &str = concat!(
    "@£$¥èéùìòÇ\nØø\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ",
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "¡ABCDEFGHIJKLMNO",
    "PQRSTUVWXYZÄÖÑÜ§",
    "¿abcdefghijklmno",
    "pqrstuvwxyzäöñüà",
);

/// GSM 03.38 extension table: each is sent as escape + character, two septets.
const GSM7_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// Septets `c` takes in GSM-7, or `None` when it is not in the alphabet.
pub fn gsm7_septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The encoding a text needs.
pub fn encoding(text: &str) -> Encoding {
    if text.chars().all(|c| gsm7_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// The distinct characters that force UCS-2, in order of first appearance (to tell an author
/// which character made the message cost more).
pub fn non_gsm_chars(text: &str) -> Vec<char> {
    let mut out = Vec::new();
    for c in text.chars() {
        if gsm7_septets(c).is_none() && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Encoding, size and number of segments of `text`.
pub fn count(text: &str) -> SegmentCount {
    let encoding = encoding(text);
    let width = |c: char| match encoding {
        Encoding::Gsm7 => gsm7_septets(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    };
    let units: usize = text.chars().map(width).sum();
    let segments = if units == 0 {
        0
    } else if units <= encoding.single_segment_units() {
        1
    } else {
        // Greedy packing that never splits a character across two segments.
        let capacity = encoding.multi_segment_units();
        let (mut segments, mut used) = (1, 0);
        for w in text.chars().map(width) {
            if used + w > capacity {
                segments += 1;
                used = 0;
            }
            used += w;
        }
        segments
    };
    SegmentCount {
        encoding,
        units,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_tables_are_complete() {
        assert_eq!(GSM7_BASIC.chars().count(), 127, "128 codes less the escape");
        assert_eq!(GSM7_EXTENSION.chars().count(), 10);
    }

    #[test]
    fn gsm7_detection() {
        assert_eq!(encoding("Hello @ £5 ¿Qué? Ñoño ÆØÅ"), Encoding::Gsm7);
        assert_eq!(encoding("{curly} [square] ~ | \\ ^ €"), Encoding::Gsm7);
        assert_eq!(encoding("it’s"), Encoding::Ucs2, "curly apostrophe");
        assert_eq!(encoding("hi 😀"), Encoding::Ucs2);
        assert_eq!(
            encoding("ç"),
            Encoding::Ucs2,
            "only capital Ç is in the basic set"
        );
        assert_eq!(encoding("á"), Encoding::Ucs2);
        assert_eq!(encoding("\t"), Encoding::Ucs2, "tab is not GSM-7");
        assert_eq!(non_gsm_chars("a’b’c😀"), ['’', '😀']);
        assert!(non_gsm_chars("plain").is_empty());
    }

    #[test]
    fn gsm7_segments() {
        assert_eq!(
            count(""),
            SegmentCount {
                encoding: Encoding::Gsm7,
                units: 0,
                segments: 0
            }
        );
        assert_eq!(count("Hi").segments, 1);
        assert_eq!(count(&"a".repeat(160)).segments, 1);
        assert_eq!(count(&"a".repeat(161)).segments, 2);
        assert_eq!(count(&"a".repeat(306)).segments, 2);
        assert_eq!(count(&"a".repeat(307)).segments, 3);
        assert_eq!(count(&"a".repeat(1600)).segments, 11);
    }

    #[test]
    fn extension_characters_count_two() {
        assert_eq!(
            count(&"€".repeat(80)),
            SegmentCount {
                encoding: Encoding::Gsm7,
                units: 160,
                segments: 1
            }
        );
        assert_eq!(
            count(&format!("{}€", "a".repeat(159))).segments,
            2,
            "161 septets"
        );
        // 152 septets then an escape pair: the pair moves whole to segment 2 (153 would split it).
        let text = format!("{}{{{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(count(&text).units, 306);
        assert_eq!(count(&text).segments, 3);
    }

    #[test]
    fn ucs2_segments() {
        assert_eq!(count(&"é".repeat(70)).encoding, Encoding::Gsm7);
        assert_eq!(
            count(&"á".repeat(70)),
            SegmentCount {
                encoding: Encoding::Ucs2,
                units: 70,
                segments: 1
            }
        );
        assert_eq!(count(&"á".repeat(71)).segments, 2);
        assert_eq!(count(&"á".repeat(134)).segments, 2);
        assert_eq!(count(&"á".repeat(135)).segments, 3);
        // One emoji turns a 100-character GSM text into UCS-2: 102 code units, 2 segments.
        let text = format!("{}😀", "a".repeat(100));
        assert_eq!(
            count(&text),
            SegmentCount {
                encoding: Encoding::Ucs2,
                units: 102,
                segments: 2
            }
        );
        // Emoji are two code units each: 35 fit in one segment, 36 do not.
        assert_eq!(count(&"😀".repeat(35)).segments, 1);
        assert_eq!(count(&"😀".repeat(36)).segments, 2);
        // 66 units then a surrogate pair: the pair moves whole to segment 2.
        let text = format!("{}😀{}", "á".repeat(66), "á".repeat(66));
        assert_eq!(count(&text).units, 134);
        assert_eq!(count(&text).segments, 3);
    }
}
